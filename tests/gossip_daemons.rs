//! Gossip between real daemons, without privileges (virtual tasks): three nodes on loopback
//! (127.98.N.1-3, each test its own N), a manager and two workers. A task's endpoint reaches
//! the other nodes' DNS and load balancers by gossip within a second of running; a node killed
//! (SIGKILL) or stopped (SIGSTOP) has its endpoints withdrawn by the others within the
//! suspicion time while the managers still list it up, and a stopped node that continues
//! rejoins and its endpoints come back; a node that leaves is withdrawn at once; nothing on
//! the gossip port reads in clear; datagrams
//! that are garbage, under an unknown key or forged under the swarm's key tag are refused and
//! counted in `swarmnet stats`.
//!
//! The daemons gossip with a SWIM probe every 300 ms and a suspicion timeout of
//! 4 x max(1, log10(N + 1)) x 300 ms = 1.2 s for three nodes (memberlist's formula and
//! multiplier); a dead node is declared down about a probe period or two plus that after it
//! stops answering, before the managers' 4 s without heartbeats.

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster::{wait_until, Node};
use swarmnet::api::client::Client;
use swarmnet::api::BalancerRow;

const SETTLE: Duration = Duration::from_secs(40);
/// The suspicion timeout the daemons run with for three nodes (see the module's doc).
const SUSPICION: Duration = Duration::from_millis(1200);
/// Failure detection on top of the suspicion timeout: the wait for the dead node's turn to be
/// probed (up to two periods with two members), the period in which it does not answer, and
/// slack for a loaded machine.
const DETECTION: Duration = Duration::from_millis(1300);

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The node's load balancer: (service, task, backend address) of every VIP backend. The task
/// names come from the node's DNS table, so a row is also a name DNS answers.
fn backends(n: &Node, service: &str) -> BTreeSet<(String, String)> {
    let rows: Vec<BalancerRow> =
        block_on(Client::new(&n.socket).get("/swarmnet/balancer")).unwrap_or_default();
    rows.into_iter()
        .filter(|r| r.service == service)
        .map(|r| (r.task, r.address))
        .collect()
}

fn backend_addrs(n: &Node, service: &str) -> BTreeSet<String> {
    backends(n, service).into_iter().map(|(_, a)| a).collect()
}

/// The node's gossip counters (`swarmnet stats`), if it gossips.
fn gossip(n: &Node) -> Option<swarmnet::api::stats::GossipStats> {
    block_on(Client::new(&n.socket).stats(&[]))
        .ok()
        .and_then(|s| s.gossip)
}

fn members(n: &Node) -> usize {
    gossip(n).map_or(0, |g| g.members.len())
}

/// A manager and two workers, named node-a, node-b, node-c, every one gossiping with the two
/// others.
fn swarm(net: &str) -> (Node, Node, Node) {
    swarm_with(net, &[])
}

/// [`swarm`] with further `swarm init` arguments.
fn swarm_with(net: &str, init: &[&str]) -> (Node, Node, Node) {
    let a = Node::start_as(&format!("{net}.1"), "node-a");
    let b = Node::start_as(&format!("{net}.2"), "node-b");
    let c = Node::start_as(&format!("{net}.3"), "node-c");
    let mut args = vec!["swarm", "init", "--advertise-addr", a.ip.as_str()];
    args.extend_from_slice(init);
    a.ok(&args);
    let token = a.token("worker");
    for n in [&b, &c] {
        let out = n.join(&token, &a);
        assert!(out.status.success(), "{}", cluster::stderr(&out));
    }
    for n in [&a, &b, &c] {
        assert!(
            wait_until(SETTLE, || members(n) == 2),
            "{} does not gossip with the two others: {:?}\n{}",
            n.ip,
            gossip(n),
            n.log()
        );
    }
    (a, b, c)
}

/// An overlay network `net` and a global whoami service `web` on it (a task on each node), and
/// a global `probe` asking the node's DNS for `tasks.web` every second.
fn web_everywhere(a: &Node) {
    a.ok(&["network", "create", "-d", "overlay", "net"]);
    a.ok(&[
        "service",
        "create",
        "-d",
        "--mode",
        "global",
        "--name",
        "web",
        "--network",
        "net",
        "swarmnet/whoami",
    ]);
    a.ok(&[
        "service",
        "create",
        "-d",
        "--mode",
        "global",
        "--name",
        "probe",
        "--network",
        "net",
        "swarmnet/lookup",
        "tasks.web",
    ]);
}

/// The managers' tasks of `service`: (node ID, state, address on its first network, state's
/// timestamp).
fn tasks(a: &Node, service: &str) -> Vec<(String, String, String, String)> {
    let svc: serde_json::Value =
        serde_json::from_str(&a.ok(&["service", "inspect", service])).expect("inspect");
    let id = svc[0]["ID"].as_str().unwrap_or_default().to_string();
    let all: serde_json::Value = block_on(Client::new(&a.socket).get("/tasks")).expect("tasks");
    all.as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["ServiceID"] == id.as_str() && t["DesiredState"] == "running")
        .map(|t| {
            let addr = t["NetworksAttachments"][0]["Addresses"][0]
                .as_str()
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (
                t["NodeID"].as_str().unwrap_or_default().to_string(),
                t["Status"]["State"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                addr,
                t["Status"]["Timestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The address of `service`'s running task on node `node_id`, per the managers.
fn task_addr_on(a: &Node, service: &str, node_id: &str) -> Option<String> {
    tasks(a, service)
        .into_iter()
        .find(|(n, st, addr, _)| n == node_id && st == "running" && !addr.is_empty())
        .map(|(_, _, addr, _)| addr)
}

/// `web` on every node, and `web`'s address on node `c` once `a` lists it and every node of
/// `nodes` has the three tasks as backends.
fn web_everywhere_with(a: &Node, c: &Node, nodes: &[&Node]) -> String {
    web_everywhere(a);
    let c_id = c.id();
    let mut c_addr = None;
    assert!(wait_until(SETTLE, || {
        c_addr = task_addr_on(a, "web", &c_id);
        c_addr.is_some()
    }));
    for n in nodes {
        assert!(
            wait_until(SETTLE, || backend_addrs(n, "web").len() == 3),
            "{}: {:?}",
            n.ip,
            backends(n, "web")
        );
    }
    c_addr.unwrap_or_default()
}

/// Unix time of an RFC 3339 UTC timestamp (`2026-12-04T15:20:01.123456789Z`).
fn unix_time(ts: &str) -> Option<f64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + s)
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Polls `n`'s balancer every 10 ms in a thread: when each backend address of `service` was
/// first seen (Unix time), until stopped.
struct Watch {
    seen: Arc<Mutex<BTreeMap<String, f64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(n: &Node, service: &str) -> Watch {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let socket = n.socket.clone();
        let service = service.to_string();
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let client = Client::new(&socket);
            while !st.load(Ordering::Relaxed) {
                let rows: Vec<BalancerRow> = rt
                    .block_on(client.get("/swarmnet/balancer"))
                    .unwrap_or_default();
                let at = now_unix();
                let mut seen = s.lock().unwrap();
                for r in rows.iter().filter(|r| r.service == service) {
                    seen.entry(r.address.clone()).or_insert(at);
                }
                drop(seen);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Watch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn first_seen(&self, addr: &str) -> Option<f64> {
        self.seen.lock().unwrap().get(addr).copied()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answers `probe`'s task on `hostname` reported for `tasks.web`, last first.
fn dns_answers(a: &Node, hostname_task_prefix: &str) -> Vec<BTreeSet<String>> {
    let out = a.ok(&["service", "logs", "probe"]);
    let mut v: Vec<BTreeSet<String>> = out
        .lines()
        .filter(|l| l.contains(hostname_task_prefix))
        .filter_map(|l| l.split_once("lookup tasks.web: ").map(|(_, r)| r))
        .map(|r| r.split(' ').map(str::to_string).collect())
        .collect();
    v.reverse();
    v
}

fn signal(n: &Node, sig: libc::c_int) {
    let pid = n.pid().expect("running daemon") as libc::pid_t;
    // SAFETY: kill(2) on our own child process, which has not been reaped.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

fn node_line(a: &Node, hostname: &str) -> String {
    a.node_lines()
        .into_iter()
        .find(|l| l.contains(hostname))
        .unwrap_or_default()
}

#[test]
fn a_task_on_one_node_is_answered_by_another_within_a_second_of_running() {
    let (a, b, _c) = swarm("127.98.1");
    a.ok(&["network", "create", "-d", "overlay", "net"]);
    // A client on node-a, so that node-a is on the network (its DNS serves it).
    a.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "probe",
        "--network",
        "net",
        "--constraint",
        "node.hostname==node-a",
        "swarmnet/lookup",
        "tasks.web",
    ]);
    assert!(wait_until(SETTLE, || !tasks(&a, "probe").is_empty()
        && tasks(&a, "probe")[0].1 == "running"));
    let watch = Watch::start(&a, "web");
    a.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        "2",
        "--network",
        "net",
        "--constraint",
        "node.hostname==node-b",
        "swarmnet/whoami",
    ]);
    let b_id = b.id();
    let mut running = Vec::new();
    assert!(
        wait_until(SETTLE, || {
            running = tasks(&a, "web")
                .into_iter()
                .filter(|(n, st, _, _)| *n == b_id && st == "running")
                .collect();
            running.len() == 2
        }),
        "{:?}\n{}",
        tasks(&a, "web"),
        b.log()
    );
    for (_, _, addr, ts) in &running {
        let since = unix_time(ts).expect("RFC 3339 timestamp");
        assert!(
            wait_until(Duration::from_secs(5), || watch.first_seen(addr).is_some()),
            "node-a never had {addr} as a backend of web: {:?}\n{}",
            backends(&a, "web"),
            a.log()
        );
        let seen = watch.first_seen(addr).unwrap_or_default();
        let took = seen - since;
        println!(
            "task {addr} on node-b running at {ts}: in node-a's DNS and balancer {:.0} ms later",
            took * 1000.0
        );
        assert!(
            took < 1.0,
            "{addr}: {took:.3} s from running on node-b to node-a"
        );
    }
    // The DNS answer a task on node-a gets holds both (the lookup asks every second).
    let want: BTreeSet<String> = running.iter().map(|(_, _, a, _)| a.clone()).collect();
    assert!(
        wait_until(Duration::from_secs(5), || dns_answers(&a, "probe.1")
            .first()
            .is_some_and(|s| *s == want)),
        "{:?}",
        dns_answers(&a, "probe.1")
    );
    // The managers no longer push other nodes' tasks: node-a's peer table is gossip's.
    let inspect: serde_json::Value =
        serde_json::from_str(&a.ok(&["network", "inspect", "net"])).unwrap();
    let peers: BTreeSet<String> = inspect[0]["Peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["IP"].as_str().map(str::to_string))
        .collect();
    assert!(peers.contains(&b.ip), "{inspect}");

    // Scaled to none, node-b leaves the network: node-a drops its endpoints (as they go,
    // each is first withdrawn from the balancer, then removed), well before the periodic
    // exchanges (30 s) would repair a missed message.
    a.ok(&["service", "scale", "-d", "web=0"]);
    let scaled = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || gossip(&a)
            .is_some_and(|g| g.remote_endpoints == 0)
            && backends(&a, "web").is_empty()),
        "{:?} {:?}\n{}\n{}",
        gossip(&a),
        backends(&a, "web"),
        a.log(),
        b.log()
    );
    println!(
        "web scaled to 0: node-b's endpoints gone from node-a {:.1} s after the command",
        scaled.elapsed().as_secs_f64()
    );
}

#[test]
fn a_killed_node_is_withdrawn_by_gossip_before_the_managers_notice() {
    let (a, b, mut c) = swarm("127.98.2");
    let c_id = c.id();
    let c_addr = web_everywhere_with(&a, &c, &[&a, &b]);
    assert!(wait_until(SETTLE, || dns_answers(&a, "probe.")
        .first()
        .is_some_and(|s| s.contains(&c_addr))));
    let killed = Instant::now();
    c.kill();
    let bound = SUSPICION + DETECTION;
    let mut gone_at = BTreeMap::new();
    let withdrawn = wait_until(bound, || {
        for n in [&a, &b] {
            if !backend_addrs(n, "web").contains(&c_addr) {
                gone_at
                    .entry(n.ip.clone())
                    .or_insert_with(|| killed.elapsed());
            }
        }
        gone_at.len() == 2
    });
    // The managers' view at that moment: node-c still up, its task still running.
    let line = node_line(&a, "node-c");
    let c_task = tasks(&a, "web")
        .into_iter()
        .find(|(n, _, _, _)| *n == c_id)
        .map(|(_, st, _, _)| st);
    println!("node-c killed: its task {c_addr} withdrawn by gossip after {gone_at:?} (suspicion {SUSPICION:?}); the managers then: {line:?}, its task {c_task:?}");
    assert!(
        withdrawn,
        "{c_addr} still a backend after {bound:?}: {:?} {:?}\n{}",
        backends(&a, "web"),
        backends(&b, "web"),
        a.log()
    );
    assert!(line.contains("Ready"), "managers: {line}");
    assert_eq!(c_task.as_deref(), Some("running"));
    assert!(a.log().contains("is down"), "{}", a.log());
    // The DNS answer of a task on node-a follows (the lookup asks every second).
    assert!(
        wait_until(Duration::from_secs(5), || dns_answers(&a, "probe.")
            .first()
            .is_some_and(|s| !s.contains(&c_addr) && s.len() == 2)),
        "{:?}",
        dns_answers(&a, "probe.")
    );
    let g = gossip(&a).expect("gossip");
    assert_eq!(g.members, ["node-b"], "{g:?}");
    assert_eq!(g.suspicion_ms, SUSPICION.as_millis() as u64);
}

#[test]
fn a_stopped_node_is_declared_down_and_rejoins_when_it_continues() {
    let (a, b, c) = swarm("127.98.3");
    let c_addr = web_everywhere_with(&a, &c, &[&a, &b, &c]);
    let stopped = Instant::now();
    signal(&c, libc::SIGSTOP);
    let bound = SUSPICION + DETECTION;
    let withdrawn = wait_until(bound + Duration::from_secs(1), || {
        [&a, &b]
            .iter()
            .all(|n| !backend_addrs(n, "web").contains(&c_addr))
    });
    let took = stopped.elapsed();
    signal(&c, libc::SIGCONT);
    let continued = Instant::now();
    assert!(
        withdrawn,
        "{c_addr} still a backend: {:?}",
        backends(&a, "web")
    );
    println!("node-c stopped: withdrawn after {took:?}");
    // Back: its endpoint on both others again, and the three tables the same.
    let back = wait_until(SETTLE, || {
        let all: Vec<BTreeSet<String>> = [&a, &b, &c]
            .iter()
            .map(|n| backend_addrs(n, "web"))
            .collect();
        all.iter().all(|s| s.len() == 3 && *s == all[0]) && all[0].contains(&c_addr)
    });
    println!(
        "node-c continued: its endpoint back everywhere after {:?}",
        continued.elapsed()
    );
    assert!(
        back,
        "{:?} {:?} {:?}\n{}",
        backends(&a, "web"),
        backends(&b, "web"),
        backends(&c, "web"),
        c.log()
    );
    for n in [&a, &b, &c] {
        assert!(wait_until(SETTLE, || members(n) == 2), "{:?}", gossip(n));
    }
}

#[test]
fn a_node_that_leaves_is_withdrawn_at_once() {
    let (a, b, c) = swarm("127.98.6");
    let c_addr = web_everywhere_with(&a, &c, &[&a, &b]);
    c.ok(&["swarm", "leave"]);
    let left = Instant::now();
    // Told, not suspected: well within the suspicion timeout of the command's end.
    let withdrawn = wait_until(SUSPICION / 2, || {
        [&a, &b]
            .iter()
            .all(|n| !backend_addrs(n, "web").contains(&c_addr))
    });
    println!(
        "node-c left: withdrawn {:?} after `swarm leave` returned",
        left.elapsed()
    );
    assert!(
        withdrawn,
        "{c_addr}: {:?} {:?}",
        backends(&a, "web"),
        backends(&b, "web")
    );
    assert!(wait_until(SUSPICION, || members(&a) == 1 && members(&b) == 1));
}

#[test]
fn gossip_follows_the_key_rotation() {
    // A rotation every 2 s: within a few seconds every key the swarm started with is retired.
    let (a, b, c) = swarm_with("127.98.7", &["--key-rotation-interval", "2s"]);
    let first = a.info().encryption_key_tags;
    let newest = first.iter().max().copied().unwrap_or_default();
    assert!(
        wait_until(SETTLE, || [&a, &b, &c].iter().all(|n| n
            .info()
            .encryption_key_tags
            .iter()
            .min()
            .is_some_and(|t| *t > newest))),
        "keys never rotated past {first:?}: {:?}",
        a.info().encryption_key_tags
    );
    // Still one cluster, and a new task still reaches the others at once.
    for n in [&a, &b, &c] {
        assert_eq!(members(n), 2, "{}: {:?}", n.ip, gossip(n));
    }
    web_everywhere(&a);
    for n in [&a, &b, &c] {
        assert!(
            wait_until(SETTLE, || backend_addrs(n, "web").len() == 3),
            "{}: {:?}",
            n.ip,
            backends(n, "web")
        );
    }
    let g = gossip(&a).expect("gossip");
    println!(
        "after rotations to {:?}: refused on node-a {:?}",
        a.info().encryption_key_tags,
        g.dropped
    );
    assert_eq!(g.dropped.get("auth_failed"), Some(&0), "{g:?}");
}

#[test]
fn a_node_removed_from_the_swarm_is_refused() {
    let (a, b, c) = swarm("127.98.8");
    web_everywhere(&a);
    for n in [&a, &b] {
        assert!(wait_until(SETTLE, || backend_addrs(n, "web").len() == 3));
    }
    let c_id = c.id();
    let c_addr = task_addr_on(&a, "web", &c_id).unwrap_or_default();
    // Stopped first, so that it cannot leave politely: what it sends when it continues comes
    // from a node the managers no longer list.
    signal(&c, libc::SIGSTOP);
    a.ok(&["node", "rm", "--force", &c_id]);
    assert!(
        wait_until(SETTLE, || [&a, &b]
            .iter()
            .all(|n| !backend_addrs(n, "web").contains(&c_addr))),
        "{:?}",
        backends(&a, "web")
    );
    signal(&c, libc::SIGCONT);
    let refused = |n: &Node| {
        gossip(n)
            .and_then(|g| g.dropped.get("not_member").copied())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || refused(&a) + refused(&b) > 0),
        "{:?} {:?}\n{}",
        gossip(&a),
        gossip(&b),
        c.log()
    );
    // It never comes back into their tables.
    assert!(!backend_addrs(&a, "web").contains(&c_addr));
    assert!(!backend_addrs(&b, "web").contains(&c_addr));
    assert_eq!((members(&a), members(&b)), (1, 1));
}

/// A raw socket on loopback that sees every frame (root or CAP_NET_RAW); `None` and why not.
fn sniffer() -> Result<libc::c_int, String> {
    // SAFETY: socket(2) with constant arguments; the descriptor is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as libc::c_int,
        )
    };
    if fd < 0 {
        return Err(format!(
            "an AF_PACKET socket needs CAP_NET_RAW: {}",
            std::io::Error::last_os_error()
        ));
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: setsockopt(2) on our descriptor with a timeval that outlives the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// The UDP and TCP payloads to or from port 7946 among `ips` that `fd` sees until `stop`.
fn sniff(fd: libc::c_int, ips: &[Ipv4Addr], stop: Arc<AtomicBool>) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: recv(2) into our buffer of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let f = &buf[..n as usize];
        // Loopback frames: a 14-byte Ethernet header of zeros, then IPv4.
        if f.len() < 34 || f[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &f[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        if !(ips.contains(&src) || ips.contains(&dst)) || ip.len() < ihl + 20 {
            continue;
        }
        let l4 = &ip[ihl..];
        let (sport, dport) = (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        );
        if sport != 7946 && dport != 7946 {
            continue;
        }
        let (udp, payload) = match ip[9] {
            17 => (true, &l4[8..]),
            6 => (false, &l4[usize::from(l4[12] >> 4) * 4..]),
            _ => continue,
        };
        if !payload.is_empty() {
            out.push((udp, payload.to_vec()));
        }
    }
    out
}

#[test]
fn nothing_on_the_gossip_port_reads_in_clear() {
    let fd = match sniffer() {
        Ok(fd) => fd,
        Err(why) => {
            println!("SKIPPED: the wire is read with a raw socket on loopback and {why}");
            return;
        }
    };
    // From before the swarm forms: the joins' full-state exchanges (TCP) too.
    let ips: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(127, 98, 4, i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let capture = std::thread::spawn(move || sniff(fd, &ips, st));
    let (a, b, c) = swarm("127.98.4");
    a.ok(&["network", "create", "-d", "overlay", "secretnet"]);
    a.ok(&[
        "service",
        "create",
        "-d",
        "--mode",
        "global",
        "--name",
        "secretweb",
        "--network",
        "secretnet",
        "swarmnet/whoami",
    ]);
    for n in [&a, &b, &c] {
        assert!(wait_until(SETTLE, || backends(n, "secretweb").len() == 3));
    }
    // The capture's length: past the second pull of the new network's table (3 s after
    // joining it, over TCP), with probes and table gossip meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let seen = capture.join().expect("capture");
    // SAFETY: our descriptor, closed once.
    unsafe { libc::close(fd) };
    let udp = seen.iter().filter(|(u, _)| *u).count();
    let tcp = seen.len() - udp;
    println!("captured {udp} UDP and {tcp} TCP payloads on port 7946");
    assert!(udp > 10 && tcp > 0, "{udp} UDP, {tcp} TCP");
    let mut secrets: Vec<Vec<u8>> = vec![b"secretweb".to_vec(), b"secretnet".to_vec()];
    for (task, addr) in backends(&a, "secretweb") {
        secrets.push(task.into_bytes());
        let ip: Ipv4Addr = addr.parse().unwrap();
        secrets.push(addr.into_bytes());
        secrets.push(ip.octets().to_vec());
    }
    for (_, p) in &seen {
        for s in &secrets {
            assert!(
                !p.windows(s.len()).any(|w| w == s.as_slice()),
                "{:?} in clear in a gossip payload",
                String::from_utf8_lossy(s)
            );
        }
    }
    // A captured datagram sent again is a replay; one with a flipped bit is forged.
    let (_, real) = seen
        .iter()
        .find(|(u, p)| *u && p.len() > 40)
        .expect("a datagram");
    let before = gossip(&a).expect("gossip").dropped;
    let tx = UdpSocket::bind("127.98.4.9:0").unwrap();
    let to: SocketAddr = "127.98.4.1:7946".parse().unwrap();
    let mut forged = real.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    tx.send_to(&forged, to).unwrap();
    let mut tag_changed = real.clone();
    tag_changed[10] ^= 0x80;
    tx.send_to(&tag_changed, to).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let now = gossip(&a).expect("gossip").dropped;
            now["auth_failed"] >= before["auth_failed"] + 2
        }),
        "{:?} -> {:?}",
        before,
        gossip(&a).map(|g| g.dropped)
    );
}

#[test]
fn garbage_foreign_keys_and_forgeries_are_refused_and_counted() {
    let (a, _b, _c) = swarm("127.98.5");
    let info = a.info();
    let tags = info.encryption_key_tags.clone();
    assert!(!tags.is_empty(), "{info:?}");
    let before = gossip(&a).expect("gossip");
    let tx = UdpSocket::bind("127.98.5.9:0").unwrap();
    let to: SocketAddr = "127.98.5.1:7946".parse().unwrap();
    // Garbage.
    tx.send_to(b"service web 10.0.1.5", to).unwrap();
    // A foreign swarm's key (a tag no key of this swarm has).
    let foreign = swarmnet::gossip::Keyring::new(&[(90_000, vec![0x5a; 16])]).unwrap();
    tx.send_to(&foreign.seal(1, 1, b"hello from elsewhere"), to)
        .unwrap();
    // A forgery: this swarm's key tags, the wrong key.
    for tag in &tags {
        let forger = swarmnet::gossip::Keyring::new(&[(*tag, vec![0xa5; 16])]).unwrap();
        tx.send_to(&forger.seal(1, 1, b"let me in"), to).unwrap();
    }
    let count =
        |g: &swarmnet::api::stats::GossipStats, k: &str| g.dropped.get(k).copied().unwrap_or(0);
    let mut now = before.clone();
    let counted = wait_until(Duration::from_secs(5), || {
        now = gossip(&a).expect("gossip");
        count(&now, "malformed") > count(&before, "malformed")
            && count(&now, "unknown_key") > count(&before, "unknown_key")
            && count(&now, "auth_failed") >= count(&before, "auth_failed") + tags.len() as u64
    });
    println!(
        "refused on node-a: {:?} (before: {:?})",
        now.dropped, before.dropped
    );
    assert!(counted, "{:?} -> {:?}", before.dropped, now.dropped);
    // Shown by `swarmnet stats` too.
    let text = a.ok(&["stats", "--no-stream"]);
    let row = text
        .lines()
        .find(|l| l.starts_with("gossip"))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("unknown_key=") && row.contains("auth_failed="),
        "{text}"
    );
    assert!(row.contains("node-b") && row.contains("node-c"), "{row}");
    // The cluster is none the worse.
    assert_eq!(members(&a), 2);
}

/// More overlay networks on a node than its gossip record holds (40): the highest IDs
/// are left out with a warning, and the others still carry every node's tasks.
#[test]
fn a_node_on_too_many_networks_keeps_gossiping_the_ones_that_fit() {
    const NETS: usize = 50;
    let (a, b, c) = swarm("127.98.9");
    let names: Vec<String> = (0..NETS).map(|i| format!("w{i:02}")).collect();
    let mut args = vec![
        "service", "create", "-d", "--mode", "global", "--name", "wide",
    ];
    for n in &names {
        a.ok(&["network", "create", "-d", "overlay", n]);
        args.extend(["--network", n.as_str()]);
    }
    args.push("swarmnet/whoami");
    a.ok(&args);
    // Backends of `wide` on node-a, by network.
    let by_network = || {
        let rows: Vec<BalancerRow> =
            block_on(Client::new(&a.socket).get("/swarmnet/balancer")).unwrap_or_default();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for r in rows.into_iter().filter(|r| r.service == "wide") {
            *count.entry(r.network).or_default() += 1;
        }
        count
    };
    let settled = wait_until(SETTLE, || {
        let c = by_network();
        c.len() == NETS
            && c.values().all(|&n| n == 1 || n == 3)
            && c.values().filter(|&&n| n == 3).count() >= 35
            && a.log().contains("fit its gossip record")
    });
    let count = by_network();
    assert!(settled, "{count:?}\n{}", a.log());
    let kept = count.values().filter(|&&n| n == 3).count();
    assert!(kept < NETS, "every network gossiped: {count:?}");
    println!("{kept} of {NETS} networks gossiped; the others carry node-a's own task only");
    for n in [&b, &c] {
        assert!(n.log().contains("fit its gossip record"), "{}", n.log());
    }
}
