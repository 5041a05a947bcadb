//! Encrypted overlay networks, live: ESP between two namespaced hosts over both transports,
//! nothing in cleartext on the wire, and key rotation in the middle of a transfer losing
//! nothing. Needs root (CI is root); skips with a printed reason otherwise.

mod lab;

use std::net::Ipv4Addr;
use std::time::Duration;

use lab::{host_addr, prefix, NodeProc, Sniffer, Underlay};

const WEB1: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);
const WEB2: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 3);
const KEYS: [(u32, &str); 5] = [
    (1, "000102030405060708090a0b0c0d0e0f"),
    (2, "101112131415161718191a1b1c1d1e1f"),
    (3, "202122232425262728292a2b2c2d2e2f"),
    (4, "303132333435363738393a3b3c3d3e3f"),
    (5, "404142434445464748494a4b4c4d4e4f"),
];

/// Whether the nodes of a pair over `transport` leave TCP checksums open (see `topology`).
fn takes_rco(transport: &str) -> bool {
    transport == "udp"
}

/// Node `me` (0: web1 local, 1: web2 local) on an encrypted network. Over UDP the nodes
/// leave TCP checksums open inside ESP (remote checksum offload), as a swarm's daemons do;
/// over IP they do not, so both ways are tried.
fn topology(me: usize, ns: &str, transport: &str, tags: &[u32], primary: u32) -> String {
    let rco = takes_rco(transport);
    let keys: Vec<String> = KEYS
        .iter()
        .filter(|(t, _)| tags.contains(t))
        .map(|(t, k)| format!("{{ tag = {t}, key = \"{k}\" }}"))
        .collect();
    let (local, lip, remote, rip) = if me == 0 {
        ("web1", WEB1, "web2", WEB2)
    } else {
        ("web2", WEB2, "web1", WEB1)
    };
    format!(
        r#"[node]
name = "node-{me}"
data_path_addr = "{addr}"
remote_checksum_offload = {rco}

[[network]]
name = "secure"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
encrypted = true

[encryption]
keys = [ {keys} ]
primary = {primary}
transport = "{transport}"
udp_port = 4500

[[endpoint]]
name = "{local}"
network = "secure"
ip = "{lip}"
netns = "{ns}"

[[endpoint]]
name = "{remote}"
network = "secure"
ip = "{rip}"
vtep = "{peer}"
"#,
        addr = host_addr(me),
        peer = host_addr(1 - me),
        keys = keys.join(", "),
    )
}

struct Pair {
    u: Underlay,
    a: NodeProc,
    b: NodeProc,
    ns1: String,
    ns2: String,
}

fn pair(tag: &str, transport: &str) -> Pair {
    let p = prefix(tag);
    let u = Underlay::new(&p, 2);
    let (ns1, ns2) = (format!("{p}-web1"), format!("{p}-web2"));
    let a = NodeProc::start(
        &u.hosts[0].0,
        &topology(0, &ns1, transport, &[1, 2, 3], 2),
        &[&ns1],
        2,
    );
    let b = NodeProc::start(
        &u.hosts[1].0,
        &topology(1, &ns2, transport, &[1, 2, 3], 2),
        &[&ns2],
        2,
    );
    Pair { u, a, b, ns1, ns2 }
}

fn esp_drops(c: &serde_json::Value) -> u64 {
    c["drops"]
        .as_object()
        .map(|d| {
            d.iter()
                .filter(|(k, _)| k.starts_with("esp_") || *k == "cleartext_on_encrypted")
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn encrypted_traffic(tag: &str, transport: &str, mtu: &str) {
    let mut t = pair(tag, transport);
    let link = std::process::Command::new("ip")
        .args(["-n", &t.ns1, "link", "show", "eth0"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.contains(&format!("mtu {mtu}")),
        "encrypted network MTU on the task interface: {link}"
    );

    let sniff = Sniffer::start(&t.u.hosts[1].0);
    assert!(
        lab::ping(&t.ns1, WEB2, 5).is_some(),
        "web1 -> web2 over ESP"
    );
    assert!(
        lab::ping(&t.ns2, WEB1, 5).is_some(),
        "web2 -> web1 over ESP"
    );
    let (sent, received, took) = lab::tcp_transfer(&t.ns1, &t.ns2, WEB2, 5101, 32 << 20);
    assert_eq!(sent, received, "TCP over ESP arrives intact");
    eprintln!("32 MiB over ESP ({transport}) in {took:?}");
    let wire = sniff.stop();
    eprintln!("on host B's underlay: {wire:?}");
    assert_eq!(wire.vxlan, 0, "no cleartext VXLAN on the wire");
    let esp = if transport == "ip" {
        wire.esp_ip
    } else {
        wire.esp_udp
    };
    assert!(
        esp > 0 && wire.esp_bytes > 32 << 20,
        "the transfer crossed as ESP ({wire:?})"
    );
    // With remote checksum offload, node B counts the TCP bursts' segments that came inside
    // ESP with their checksums open; without it, none.
    let c = t.b.counters_when(Duration::from_secs(5), |c| {
        let rco = c["events"]["rco_received"].as_u64().unwrap_or(0);
        c["ports"]["underlay"]["rx_packets"].as_u64() > Some(20_000)
            && (rco > 0) == takes_rco(transport)
    });
    assert_eq!(esp_drops(&c), 0, "no ESP refusals: {}", c["drops"]);
    assert!(t.a.alive() && t.b.alive());
}

#[test]
fn encrypted_network_over_ip_protocol_50() {
    require_lab!();
    encrypted_traffic("e", "ip", "1416");
}

#[test]
fn encrypted_network_over_udp_4500() {
    require_lab!();
    encrypted_traffic("f", "udp", "1408");
}

#[test]
fn key_rotation_during_a_transfer_loses_nothing() {
    require_lab!();
    let t = pair("g", "ip");
    assert!(lab::ping(&t.ns1, WEB2, 5).is_some());
    let (ns1, ns2) = (t.ns1.clone(), t.ns2.clone());
    let transfer = std::thread::spawn(move || lab::tcp_transfer(&ns1, &ns2, WEB2, 5102, 96 << 20));
    // Wait until the transfer is under way, then rotate twice as the swarm does: add the new
    // key, move the primary to the next one, prune the oldest.
    t.a.counters_when(Duration::from_secs(20), |c| {
        c["ports"]["underlay"]["tx_packets"].as_u64() > Some(5_000)
    });
    for (tags, primary) in [([2, 3, 4], 3), ([3, 4, 5], 4)] {
        // Receivers learn a key before any sender seals with it.
        assert!(t
            .b
            .reload(&topology(1, &t.ns2, "ip", &tags, primary))
            .starts_with("reloaded"));
        assert!(t
            .a
            .reload(&topology(0, &t.ns1, "ip", &tags, primary))
            .starts_with("reloaded"));
        let before = t.a.counters_when(Duration::from_secs(5), |_| true)["ports"]["underlay"]
            ["tx_packets"]
            .as_u64()
            .unwrap();
        t.a.counters_when(Duration::from_secs(20), |c| {
            c["ports"]["underlay"]["tx_packets"].as_u64() > Some(before + 2_000)
        });
    }
    let (sent, received, _) = transfer.join().expect("transfer");
    assert_eq!(sent, received, "the transfer survives two rotations intact");
    let c = t.b.counters_when(Duration::from_secs(5), |_| true);
    assert_eq!(
        esp_drops(&c),
        0,
        "no packet refused across the rotations: {}",
        c["drops"]
    );
    // A reload that would change what cannot change live is refused, and the node runs on.
    let moved = topology(1, &t.ns2, "udp", &[3, 4, 5], 4);
    assert_eq!(t.b.reload(&moved), "reload failed");
    assert!(
        lab::ping(&t.ns1, WEB2, 5).is_some(),
        "still carrying traffic after a refused reload"
    );
}

#[test]
fn a_node_restarted_with_the_same_keys_is_not_refused_as_a_replay() {
    require_lab!();
    let mut t = pair("h", "udp");
    // Enough traffic that host B's replay window sits far above where a fresh run would start.
    let (sent, received, _) = lab::tcp_transfer(&t.ns1, &t.ns2, WEB2, 5103, 8 << 20);
    assert_eq!(sent, received);
    t.b.counters_when(Duration::from_secs(5), |c| {
        c["ports"]["underlay"]["rx_packets"].as_u64() > Some(2_000)
    });

    // A crash: no clean stop, so the node resumes from its last reservation.
    t.a.restart();
    assert!(
        lab::ping(&t.ns1, WEB2, 3).is_some(),
        "web1 -> web2 right after host A's node crashed and restarted"
    );
    // A clean stop stores the exact last numbers; the next run continues from them.
    let status = t.a.stop();
    assert!(status.success());
    t.a.restart();
    let (sent, received, _) = lab::tcp_transfer(&t.ns1, &t.ns2, WEB2, 5104, 4 << 20);
    assert_eq!(sent, received, "TCP after a clean restart");
    let c = t.b.counters_when(Duration::from_secs(5), |_| true);
    assert_eq!(
        c["drops"]["esp_replay"].as_u64().unwrap_or(0),
        0,
        "host B refused nothing as a replay: {}",
        c["drops"]
    );

    // The receiver crashes: its windows come back from the file, and both directions work.
    t.b.restart();
    let (sent, received, _) = lab::tcp_transfer(&t.ns2, &t.ns1, WEB1, 5105, 4 << 20);
    assert_eq!(sent, received, "TCP from the restarted receiver's side");
    assert!(lab::ping(&t.ns1, WEB2, 3).is_some(), "and towards it");
    for node in [&t.a, &t.b] {
        let c = node.counters_when(Duration::from_secs(5), |_| true);
        assert_eq!(esp_drops(&c), 0, "no ESP refusals: {}", c["drops"]);
    }
}

#[test]
fn transport_ip_without_cap_net_raw_refuses_to_start_and_says_why() {
    require_lab!();
    use std::os::unix::process::CommandExt;
    let p = prefix("n");
    let u = Underlay::new(&p, 1);
    let ns1 = format!("{p}-web1");
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("node.toml");
    std::fs::write(&topo, topology(0, &ns1, "ip", &[1, 2, 3], 2)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_swarmnet"));
    cmd.args(["run", "--netns", &u.hosts[0].0, "--topology"])
        .arg(&topo)
        .arg("--counters")
        .arg(dir.path().join("counters.json"))
        .arg("--esp-sequence-file")
        .arg(dir.path().join("esp-sequence.json"));
    // SAFETY: prctl in the child between fork and exec, async-signal-safe. Dropping
    // CAP_NET_RAW from the bounding set leaves the node (root) every other capability.
    unsafe {
        cmd.pre_exec(|| {
            const CAP_NET_RAW: libc::c_ulong = 13;
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started without CAP_NET_RAW: {stderr}"
    );
    assert!(
        stderr.contains("needs CAP_NET_RAW")
            && stderr.contains("grant it, or set transport = \"udp\""),
        "{stderr}"
    );
    assert!(
        !swarmnet::io::netns::exists(&ns1),
        "nothing it created is left behind"
    );
    // The same node with transport "udp" starts without CAP_NET_RAW.
    std::fs::write(&topo, topology(0, &ns1, "udp", &[1, 2, 3], 2)).unwrap();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|l| l == "ready");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    // Read to the end, so the node's last words do not meet a closed pipe.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(ready, "transport \"udp\" needs no raw socket");
}
