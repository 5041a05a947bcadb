//! Live data path: swarmnet nodes in namespaced hosts carrying real traffic between tasks, with
//! the Linux kernel's VXLAN as a peer, under hostile input. Needs root (CI is root); skips with
//! a printed reason otherwise.

mod lab;

use std::net::Ipv4Addr;
use std::time::Duration;

use lab::{host_addr, prefix, NodeProc, Underlay};

const WEB1: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);
const WEB2: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 3);
const KERN: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 5);

#[derive(Clone, Copy)]
struct Ep<'a> {
    name: &'a str,
    ip: Ipv4Addr,
    /// None: local, in namespace `netns`.
    vtep: Option<Ipv4Addr>,
    netns: &'a str,
}

fn topology(node: &str, addr: Ipv4Addr, eps: &[Ep]) -> String {
    topology_rco(node, addr, eps, false)
}

/// `topology`, with the node's peers taking VXLAN remote checksum offload when `rco`.
fn topology_rco(node: &str, addr: Ipv4Addr, eps: &[Ep], rco: bool) -> String {
    let mut t = format!(
        "[node]\nname = \"{node}\"\ndata_path_addr = \"{addr}\"\nremote_checksum_offload = {rco}\n\n[[network]]\nname = \"my-network\"\nvni = 4097\nsubnet = \"10.0.9.0/24\"\ngateway = \"10.0.9.1\"\n"
    );
    for e in eps {
        t += &format!(
            "\n[[endpoint]]\nname = \"{}\"\nnetwork = \"my-network\"\nip = \"{}\"\n",
            e.name, e.ip
        );
        match e.vtep {
            Some(v) => t += &format!("vtep = \"{v}\"\n"),
            None => t += &format!("netns = \"{}\"\n", e.netns),
        }
    }
    t
}

/// Two hosts, one task each: host 0 runs web1, host 1 runs web2.
fn two_nodes(p: &str, extra_on_a: &[Ep]) -> (Underlay, NodeProc, NodeProc, String, String) {
    two_nodes_rco(p, extra_on_a, false)
}

/// `two_nodes`, both taking VXLAN remote checksum offload when `rco` (as a swarm's daemons do).
fn two_nodes_rco(
    p: &str,
    extra_on_a: &[Ep],
    rco: bool,
) -> (Underlay, NodeProc, NodeProc, String, String) {
    let u = Underlay::new(p, 3);
    let (ns1, ns2) = (format!("{p}-web1"), format!("{p}-web2"));
    let mut a_eps = vec![
        Ep {
            name: "web1",
            ip: WEB1,
            vtep: None,
            netns: &ns1,
        },
        Ep {
            name: "web2",
            ip: WEB2,
            vtep: Some(host_addr(1)),
            netns: "",
        },
    ];
    for e in extra_on_a {
        a_eps.push(Ep {
            name: e.name,
            ip: e.ip,
            vtep: e.vtep,
            netns: e.netns,
        });
    }
    let a = NodeProc::start(
        &u.hosts[0].0,
        &topology_rco("node-a", host_addr(0), &a_eps, rco),
        &[&ns1],
        2,
    );
    let b_eps = [
        Ep {
            name: "web1",
            ip: WEB1,
            vtep: Some(host_addr(0)),
            netns: "",
        },
        Ep {
            name: "web2",
            ip: WEB2,
            vtep: None,
            netns: &ns2,
        },
    ];
    let b = NodeProc::start(
        &u.hosts[1].0,
        &topology_rco("node-b", host_addr(1), &b_eps, rco),
        &[&ns2],
        2,
    );
    (u, a, b, ns1, ns2)
}

#[test]
fn two_hosts_carry_ping_tcp_and_udp() {
    require_lab!();
    let p = prefix("a");
    // As a swarm's daemons run: TCP bursts leave with their checksums open (VXLAN RCO), for
    // the receiving task's kernel. (Without it: `kernel_vxlan_peer_exchanges_traffic`.)
    let (u, mut a, mut b, ns1, ns2) = two_nodes_rco(&p, &[], true);

    // ARP is answered by the node, then ICMP crosses the overlay both ways.
    let sniff = lab::Sniffer::start(&u.hosts[0].0);
    assert!(lab::ping(&ns1, WEB2, 5).is_some(), "web1 -> web2 ping");
    assert!(lab::ping(&ns2, WEB1, 5).is_some(), "web2 -> web1 ping");
    let wire = sniff.stop();
    // Like the kernel's VXLAN device: to UDP 4789, from a dynamic port chosen per flow.
    let (lo, hi) = wire
        .vxlan_src_ports
        .expect("the pings crossed the underlay as VXLAN");
    assert!(
        lo >= 49152,
        "VXLAN source ports {lo}-{hi} are dynamic ports"
    );
    let neigh = std::process::Command::new("ip")
        .args(["-n", &ns1, "neigh", "show", "10.0.9.3"])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(
        neigh.contains("02:42:0a:00:09:03"),
        "web1 resolved web2's MAC by ARP: {neigh}"
    );

    // 100 MB over TCP, verified by hash.
    let sniff = lab::Sniffer::start(&u.hosts[0].0);
    let (sent, received, took) = lab::tcp_transfer(&ns1, &ns2, WEB2, 5001, 100 << 20);
    assert_eq!(sent, received, "TCP payload arrives intact");
    let wire = sniff.stop();
    assert!(
        wire.vxlan_rco > 0,
        "TCP bursts left with remote checksum offload: {wire:?}"
    );
    eprintln!("100 MiB web1 -> web2 in {took:?}");
    let (sent, received, _) = lab::tcp_transfer(&ns2, &ns1, WEB1, 5002, 8 << 20);
    assert_eq!(sent, received, "and the other way");

    // UDP, including datagrams the sender's kernel fragments to the 1450-byte MTU.
    let sizes: Vec<usize> = (0..60)
        .map(|i| [1, 100, 1000, 1422, 3000, 8000][i % 6])
        .collect();
    let (sent, got) = lab::udp_exchange(&ns1, &ns2, WEB2, 6000, sizes);
    // Fragments carry no ports, so the sender's kernel hashes them to another TAP queue (and
    // worker) than whole datagrams of the same socket: UDP gives no order across those.
    let whole = |v: &[Vec<u8>]| {
        v.iter()
            .filter(|d| d.len() <= 1422)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        whole(&got),
        whole(&sent),
        "unfragmented datagrams arrive intact and in order"
    );
    let (mut got, mut sent) = (got, sent);
    got.sort();
    sent.sort();
    assert_eq!(got.len(), sent.len(), "every UDP datagram arrives");
    assert!(got == sent, "UDP payloads arrive intact");

    // The node rewrites its counters every second: wait for the file to catch up.
    let counters = a.counters_when(Duration::from_secs(5), |c| {
        c["events"]["arp_replies"].as_u64() > Some(0)
            && c["ports"]["underlay"]["tx_bytes"].as_u64() > Some(100 << 20)
    });
    // Node B counts web1's TCP segments it took with their checksums open.
    b.counters_when(Duration::from_secs(5), |c| {
        c["events"]["rco_received"].as_u64() > Some(0)
    });
    assert!(
        counters["task_interfaces"]["web1"]["tx_dropped"].is_u64(),
        "the task interface's kernel drops are reported: {counters:#}"
    );
    assert!(a.alive() && b.alive());
    assert!(a.stop().success() && b.stop().success(), "clean shutdown");
    for ns in [&ns1, &ns2] {
        assert!(
            !swarmnet::io::netns::exists(ns),
            "task namespace {ns} removed at exit"
        );
    }
}

/// The kernel's VXLAN device in a third host, programmed statically as Docker programs peers.
#[test]
fn kernel_vxlan_peer_exchanges_traffic() {
    require_lab!();
    let p = prefix("k");
    let kern_ep = [Ep {
        name: "kern",
        ip: KERN,
        vtep: Some(host_addr(2)),
        netns: "",
    }];
    let (u, a, _b, ns1, _ns2) = two_nodes(&p, &kern_ep);
    let k = &u.hosts[2].0;
    let local = host_addr(2).to_string();
    lab::ip(&[
        "-n",
        k,
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "4097",
        "dstport",
        "4789",
        "local",
        &local,
        "nolearning",
    ]);
    lab::ip(&[
        "-n",
        k,
        "link",
        "set",
        "vx0",
        "address",
        "02:42:0a:00:09:05",
        "mtu",
        "1450",
        "up",
    ]);
    lab::ip(&["-n", k, "addr", "add", "10.0.9.5/24", "dev", "vx0"]);
    lab::ip(&[
        "-n",
        k,
        "neigh",
        "add",
        "10.0.9.2",
        "lladdr",
        "02:42:0a:00:09:02",
        "dev",
        "vx0",
        "nud",
        "permanent",
    ]);
    let out = std::process::Command::new("bridge")
        .args([
            "-n",
            k,
            "fdb",
            "add",
            "02:42:0a:00:09:02",
            "dev",
            "vx0",
            "dst",
            &host_addr(0).to_string(),
            "self",
            "permanent",
        ])
        .output()
        .expect("bridge (iproute2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // On a veth underlay the kernel hands inner TCP/UDP checksums over unfinished (a NIC would
    // finish them on the wire): have vx0 compute them in software, as `ethtool -K vx0 tx off`.
    lab::in_ns(k, || lab::set_tx_checksum_offload("vx0", false));

    assert!(
        lab::ping(&ns1, KERN, 5).is_some(),
        "swarmnet task -> kernel VXLAN peer"
    );
    assert!(
        lab::ping(k, WEB1, 5).is_some(),
        "kernel VXLAN peer -> swarmnet task"
    );
    let (sent, received, _) = lab::tcp_transfer(&ns1, k, KERN, 5003, 16 << 20);
    assert_eq!(sent, received, "TCP swarmnet -> kernel");
    let (sent, received, _) = lab::tcp_transfer(k, &ns1, WEB1, 5004, 16 << 20);
    assert_eq!(sent, received, "TCP kernel -> swarmnet");

    // A virtual task added to the running node answers the kernel's stack too.
    const WHO: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 6);
    let eps = [
        Ep {
            name: "web1",
            ip: WEB1,
            vtep: None,
            netns: &ns1,
        },
        Ep {
            name: "web2",
            ip: WEB2,
            vtep: Some(host_addr(1)),
            netns: "",
        },
        kern_ep[0],
    ];
    let topo = topology("node-a", host_addr(0), &eps) + &virtual_endpoint("who", WHO, "whoami");
    assert!(
        a.reload(&topo).ends_with("tasks added: who; removed: none"),
        "the virtual task joins the running node"
    );
    lab::ip(&[
        "-n",
        k,
        "neigh",
        "add",
        "10.0.9.6",
        "lladdr",
        "02:42:0a:00:09:06",
        "dev",
        "vx0",
        "nud",
        "permanent",
    ]);
    let out = std::process::Command::new("bridge")
        .args([
            "-n",
            k,
            "fdb",
            "append",
            "02:42:0a:00:09:06",
            "dev",
            "vx0",
            "dst",
        ])
        .arg(host_addr(0).to_string())
        .args(["self", "permanent"])
        .output()
        .expect("bridge (iproute2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        lab::ping(k, WHO, 5).is_some(),
        "kernel VXLAN peer -> virtual task"
    );
    let size = 4 << 20;
    let (head, body, hash) = http_get(k, WHO, &format!("/data?size={size}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(
        (body, hash),
        (size, data_hash(size)),
        "4 MiB to the kernel's stack, intact"
    );
}

#[test]
fn hostile_input_is_dropped_counted_and_survived() {
    require_lab!();
    let p = prefix("r");
    let (u, mut a, _b, ns1, ns2) = two_nodes(&p, &[]);
    assert!(lab::ping(&ns1, WEB2, 5).is_some());

    // Garbage frames into web1's TAP, from inside the task (a packet socket on eth0).
    let frames = lab::in_ns(&ns1, || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0x0300)))
            .expect("packet socket");
        let idx = ifindex(c"eth0");
        let mut sent = 0u32;
        let mut state = 0u64;
        for i in 0..5000usize {
            let len = 14 + (i * 37) % 1400;
            let mut f = vec![0u8; len];
            lab::pattern(0xbad, &mut f, &mut state);
            if i % 2 == 0 {
                f[6..12].copy_from_slice(&[0x02, 0x42, 10, 0, 9, 2]); // web1's own source MAC
                f[0..6].copy_from_slice(&[0x02, 0x42, 10, 0, 9, 3]); // to web2
                f[12..14].copy_from_slice(&[0x08, 0x00]); // "IPv4" with garbage inside
            }
            if send_on(&s, idx, &f) {
                sent += 1;
            }
        }
        sent
    });
    assert!(frames > 4000, "sent {frames} garbage frames");

    // Garbage datagrams onto node-a's VXLAN port, from host 1.
    let target = std::net::SocketAddrV4::new(host_addr(0), 4789);
    let datagrams = lab::in_ns(&u.hosts[1].0, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut state = 0u64;
        let mut sent = 0u32;
        for i in 0..5000usize {
            let mut d = vec![0u8; (i * 13) % 1500];
            lab::pattern(0xfeed, &mut d, &mut state);
            if i % 3 == 0 && d.len() >= 8 {
                d[0] = 0x08; // I flag, then a VNI of no network
                d[4..7].copy_from_slice(&[0xab, 0xcd, 0xef]);
            }
            if s.send_to(&d, target).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    assert_eq!(datagrams, 5000);

    let c = a.counters_when(Duration::from_secs(10), |c| {
        let d = &c["drops"];
        // Cut-short frames from the task count `malformed_inner`, cut-short datagrams `malformed`.
        let malformed =
            d["malformed"].as_u64().unwrap_or(0) + d["malformed_inner"].as_u64().unwrap_or(0);
        d["unknown_vni"].as_u64().unwrap_or(0) > 1000 && malformed > 1000
    });
    eprintln!("drops after the flood: {}", c["drops"]);
    assert!(a.alive(), "node survived");
    assert!(
        lab::ping(&ns1, WEB2, 5).is_some(),
        "good traffic still flows"
    );
    let (sent, received, _) = lab::tcp_transfer(&ns1, &ns2, WEB2, 5005, 4 << 20);
    assert_eq!(sent, received);
}

#[test]
fn without_net_admin_run_says_what_it_needs() {
    require_lab!();
    use std::os::unix::process::CommandExt;
    let dir = std::env::temp_dir().join(format!("swarmnet-noadmin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = dir.join("t.toml");
    // A task in a namespace needs the capability (a node with no local task would start).
    let eps = [Ep {
        name: "web1",
        ip: WEB1,
        vtep: None,
        netns: "web1",
    }];
    std::fs::write(&topo, topology("n", Ipv4Addr::new(192, 0, 2, 10), &eps)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&topo, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmnet"))
        .args(["run", "--counters", "/tmp/unused.json", "--topology"])
        .arg(&topo)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs CAP_NET_ADMIN"), "{stderr}");
}

/// The index of interface `name` in the calling thread's namespace.
fn ifindex(name: &std::ffi::CStr) -> i32 {
    // SAFETY: a valid NUL-terminated name; the call only reads it.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(idx > 0, "no interface {name:?}");
    idx as i32
}

/// Sends one raw frame on interface `ifindex` through a packet socket.
fn send_on(s: &socket2::Socket, ifindex: i32, frame: &[u8]) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero sockaddr_ll is valid; family, protocol and index are filled in.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = 0x0300u16; // ETH_P_ALL, network order
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    // SAFETY: frame and sll are valid for the lengths passed for the duration of the call.
    let n = unsafe {
        libc::sendto(
            s.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    n == frame.len() as isize
}

#[test]
fn a_crashed_node_leaves_nothing_that_blocks_the_next_start() {
    require_lab!();
    let p = prefix("c");
    let u = Underlay::new(&p, 1);
    let ns1 = format!("{p}-web1");
    let eps = [Ep {
        name: "web1",
        ip: WEB1,
        vtep: None,
        netns: &ns1,
    }];
    let topo = topology("node-a", host_addr(0), &eps);
    let mut first = NodeProc::start(&u.hosts[0].0, &topo, &[&ns1], 1);
    // SIGKILL: no clean-up runs, the task namespace stays behind.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(
        swarmnet::io::netns::exists(&ns1),
        "the killed node left its task namespace"
    );
    first.task_netns.clear();
    drop(first);

    let second = NodeProc::start(&u.hosts[0].0, &topo, &[&ns1], 1);
    // `swarmnet exec` runs a command in the task's namespace, which has its interface again.
    let topo_path = second.dir.join("topology.toml");
    let task_addr = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmnet"))
            .args(["exec", "web1", "--topology"])
            .arg(&topo_path)
            .args(["--", "ip", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let addr = task_addr();
    assert!(addr.contains("inet 10.0.9.2/24"), "{addr}");
    // Another `swarmnet run` in the same host that must refuse to start: its stderr.
    let refused_run = |topology: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmnet"))
            .args(["run", "--netns", &u.hosts[0].0, "--counters"])
            // A state directory of its own: the run lock of the node's directory is not what
            // this checks.
            .arg(second.dir.join("refused").join("counters.json"))
            .arg("--topology")
            .arg(topology)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // A second node given the same task namespace refuses it and leaves it to its owner.
    let stderr = refused_run(&topo_path);
    let owner = format!("in use by a running swarmnet (pid {})", second.child.id());
    assert!(stderr.contains(&owner), "{stderr}");
    let addr = task_addr();
    assert!(
        addr.contains("inet 10.0.9.2/24"),
        "the running node's task keeps its interface: {addr}"
    );

    // A namespace swarmnet did not create is never taken over.
    let foreign = lab::Ns::new(&format!("{p}-foreign"));
    let eps = [Ep {
        name: "web9",
        ip: Ipv4Addr::new(10, 0, 9, 9),
        vtep: None,
        netns: &foreign.0,
    }];
    let foreign_topo = second.dir.join("foreign.toml");
    std::fs::write(&foreign_topo, topology("node-x", host_addr(0), &eps)).unwrap();
    let stderr = refused_run(&foreign_topo);
    assert!(stderr.contains("was not created by swarmnet"), "{stderr}");
}

#[test]
fn tasks_come_and_go_under_a_running_transfer() {
    require_lab!();
    let p = prefix("g");
    let (_u, mut a, b, ns1, ns2) = two_nodes(&p, &[]);
    let ns3 = format!("{p}-web3");
    let ns4 = format!("{p}-web4");
    a.task_netns.extend([ns3.clone(), ns4.clone()]);
    const WEB3: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 7);
    const WEB4: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 8);
    fn ep<'a>(name: &'a str, ip: Ipv4Addr, vtep: Option<Ipv4Addr>, netns: &'a str) -> Ep<'a> {
        Ep {
            name,
            ip,
            vtep,
            netns,
        }
    }
    let a_topo = |extra: &[Ep]| {
        let mut eps = vec![
            ep("web1", WEB1, None, &ns1),
            ep("web2", WEB2, Some(host_addr(1)), ""),
        ];
        eps.extend_from_slice(extra);
        topology("node-a", host_addr(0), &eps)
    };
    let b_topo = |extra: &[Ep]| {
        let mut eps = vec![
            ep("web1", WEB1, Some(host_addr(0)), ""),
            ep("web2", WEB2, None, &ns2),
        ];
        eps.extend_from_slice(extra);
        topology("node-b", host_addr(1), &eps)
    };

    let stream = lab::tcp_stream(&ns1, &ns2, WEB2, 5201);
    stream.advance(1 << 20, Duration::from_secs(20));
    for round in 0..3 {
        // Node A gains two tasks; node B learns where they live.
        let both = [ep("web3", WEB3, None, &ns3), ep("web4", WEB4, None, &ns4)];
        let answer = a.reload(&a_topo(&both));
        assert_eq!(
            answer,
            format!(
                "reloaded {}: tasks added: web3, web4; removed: none",
                a.dir.join("topology.toml").display()
            ),
            "round {round}"
        );
        let remote = [
            ep("web3", WEB3, Some(host_addr(0)), ""),
            ep("web4", WEB4, Some(host_addr(0)), ""),
        ];
        assert!(b.reload(&b_topo(&remote)).starts_with("reloaded"));
        assert!(lab::ping(&ns2, WEB3, 5).is_some(), "web2 -> new web3");
        assert!(
            lab::ping(&ns3, WEB1, 5).is_some(),
            "new web3 -> web1, same node"
        );
        assert!(lab::ping(&ns4, WEB2, 5).is_some(), "new web4 -> web2");
        stream.advance(1 << 20, Duration::from_secs(20));
        // web3 goes, web4 stays untouched.
        let answer = a.reload(&a_topo(&both[1..]));
        assert!(
            answer.ends_with("tasks added: none; removed: web3"),
            "{answer}"
        );
        assert!(
            !swarmnet::io::netns::exists(&ns3),
            "a removed task's namespace is deleted"
        );
        assert!(lab::ping(&ns4, WEB2, 5).is_some(), "web4 stays");
        stream.advance(1 << 20, Duration::from_secs(20));
        // And web4 goes too, leaving the node as it began.
        assert!(a.reload(&a_topo(&[])).ends_with("removed: web4"));
        assert!(b.reload(&b_topo(&[])).starts_with("reloaded"));
        stream.advance(1 << 20, Duration::from_secs(20));
    }
    let r = stream.finish();
    assert_eq!(r.bytes_sent, r.bytes_received);
    assert_eq!(r.sent, r.received, "the stream arrives intact");
    assert!(
        u64::from(r.retransmitted) * 100 <= u64::from(r.segments),
        "no retransmission storm: {} of {} segments retransmitted",
        r.retransmitted,
        r.segments
    );
    // The port that stayed kept its counters (one id for the whole run), and the counters file
    // (rewritten every second) comes to name only the ports that are left.
    a.counters_when(Duration::from_secs(5), |c| {
        c["ports"]["web1"]["rx_bytes"].as_u64() > Some(r.bytes_sent / 2)
            && c["ports"].get("web3").is_none()
            && c["ports"].get("web4").is_none()
    });
    assert!(a.alive());
}

#[test]
fn two_runs_started_at_once_one_wins_and_the_loser_touches_nothing() {
    require_lab!();
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let p = prefix("d");
    let u = Underlay::new(&p, 1);
    let ns1 = format!("{p}-web1");
    let _cleanup = lab::Ns(ns1.clone());
    let eps = [Ep {
        name: "web1",
        ip: WEB1,
        vtep: None,
        netns: &ns1,
    }];
    let dir = std::env::temp_dir().join(format!("swarmnet-race-{p}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let host = u.hosts[0].0.clone();
    // Runs `swarmnet run` on `state` (its counters directory); returns the child and a channel
    // that yields once: true on "ready", false when its output ends before.
    let spawned = std::cell::Cell::new(0);
    let spawn = |node: &str, state: &str| {
        let state = dir.join(state);
        std::fs::create_dir_all(&state).unwrap();
        // A file per run: another run may be reading the previous one.
        spawned.set(spawned.get() + 1);
        let topo = state.join(format!("t{}.toml", spawned.get()));
        std::fs::write(&topo, topology(node, host_addr(0), &eps)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_swarmnet"))
            .args(["run", "--netns", &host, "--workers", "1", "--topology"])
            .arg(&topo)
            .arg("--counters")
            .arg(state.join("counters.json"))
            .arg("--esp-sequence-file")
            .arg(state.join("esp.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(out).lines().map_while(Result::ok);
            let ready = lines.any(|l| l == "ready");
            let _ = tx.send(ready);
            // Read to the end: a node whose stdout closed would fail its last words.
            lines.for_each(drop);
        });
        (child, rx)
    };
    let outcome = |rx: &std::sync::mpsc::Receiver<bool>| {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("a run either gets ready or ends")
    };
    let stderr_of = |mut child: std::process::Child| {
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "the loser fails: {err}");
        err
    };
    for (round, (x, y)) in [(("n", "s1"), ("n", "s1")), (("n1", "s1"), ("n2", "s2"))]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        // The same node twice (one state directory), then two nodes claiming one namespace.
        let (c1, r1) = spawn(x.0, x.1);
        let (c2, r2) = spawn(y.0, y.1);
        let (o1, o2) = (outcome(&r1), outcome(&r2));
        assert!(o1 != o2, "round {round}: exactly one run gets ready");
        let (mut winner, loser) = if o1 { (c1, c2) } else { (c2, c1) };
        let err = stderr_of(loser);
        let want = if x == y {
            format!("node {} is already running (pid {}", x.0, winner.id())
        } else {
            format!("in use by a running swarmnet (pid {})", winner.id())
        };
        assert!(err.contains(&want), "round {round}: {err}");
        // The winner crashes; its marker, untouched by the loser, lets the next run clean up.
        winner.kill().unwrap();
        winner.wait().unwrap();
        let (mut next, r) = spawn(x.0, x.1);
        if !outcome(&r) {
            let err = stderr_of(next);
            panic!("round {round}: the run after the crash refused: {err}");
        }
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(next.id() as libc::pid_t, libc::SIGTERM) };
        assert!(next.wait().unwrap().success());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_data_path_address_not_on_this_host_is_named_with_its_port() {
    require_lab!();
    let p = prefix("b");
    let u = Underlay::new(&p, 1);
    let dir = std::env::temp_dir().join(format!("swarmnet-bind-{p}"));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = dir.join("t.toml");
    // 192.0.2.99 is on the underlay's subnet but no host has it.
    let eps = [Ep {
        name: "web2",
        ip: WEB2,
        vtep: Some(host_addr(1)),
        netns: "",
    }];
    std::fs::write(&topo, topology("n", Ipv4Addr::new(192, 0, 2, 99), &eps)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmnet"))
        .args(["run", "--netns", &u.hosts[0].0, "--counters"])
        .arg(dir.join("counters.json"))
        .arg("--topology")
        .arg(&topo)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot bind the data path to 192.0.2.99:4789:"),
        "{stderr}"
    );
}

/// An `[[endpoint]]` served by a virtual task with `app` on my-network.
fn virtual_endpoint(name: &str, ip: Ipv4Addr, app: &str) -> String {
    format!("\n[[endpoint]]\nname = \"{name}\"\nnetwork = \"my-network\"\nip = \"{ip}\"\napp = \"{app}\"\n")
}

/// Fetches `path` over HTTP from `server`:80 from a thread in `ns`: (head and the first 4 KiB
/// of the body, body length, sha256 of the body).
fn http_get(ns: &str, server: Ipv4Addr, path: &str) -> (String, u64, [u8; 32]) {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let req = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nUser-Agent: live-test\r\n\r\n");
    lab::in_ns(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddrV4::new(server, 80).into(),
            Duration::from_secs(10),
        )
        .expect("connect to the virtual task");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut h = Sha256::new();
        let mut body = 0u64;
        let mut in_body = false;
        loop {
            let n = s.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            let mut chunk = &buf[..n];
            if !in_body {
                let start = head.len();
                head.extend_from_slice(chunk);
                match head.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(end) => {
                        chunk = &chunk[end + 4 - start..];
                        head.truncate(end + 4);
                        in_body = true;
                    }
                    None => continue,
                }
            }
            if head.len() < 8192 {
                let k = chunk.len().min(8192 - head.len());
                head.extend_from_slice(&chunk[..k]);
            }
            h.update(chunk);
            body += chunk.len() as u64;
        }
        (
            String::from_utf8_lossy(&head).into_owned(),
            body,
            h.finalize().into(),
        )
    })
}

/// sha256 of the first `n` bytes of whoami's `/data` pattern.
fn data_hash(n: u64) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let block: Vec<u8> = (0..251u64 * 256).map(|i| (i % 251) as u8).collect();
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        h.update(&block[..k]);
        left -= k as u64;
    }
    h.finalize().into()
}

#[test]
fn virtual_tasks_answer_namespaced_tasks_here_and_across_nodes() {
    require_lab!();
    let p = prefix("v");
    const WHO: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 20);
    const ECHO: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 21);
    let u = Underlay::new(&p, 2);
    let ns1 = format!("{p}-web1");
    // Host A: web1 in a namespace and an echo task; host B: a whoami task.
    let a_topo = topology(
        "node-a",
        host_addr(0),
        &[
            Ep {
                name: "web1",
                ip: WEB1,
                vtep: None,
                netns: &ns1,
            },
            Ep {
                name: "who",
                ip: WHO,
                vtep: Some(host_addr(1)),
                netns: "",
            },
        ],
    ) + &virtual_endpoint("echo", ECHO, "echo");
    let b_topo = topology(
        "node-b",
        host_addr(1),
        &[Ep {
            name: "web1",
            ip: WEB1,
            vtep: Some(host_addr(0)),
            netns: "",
        }],
    ) + &virtual_endpoint("who", WHO, "whoami");
    let _a = NodeProc::start(&u.hosts[0].0, &a_topo, &[&ns1], 2);
    let _b = NodeProc::start(&u.hosts[1].0, &b_topo, &[], 2);

    assert!(
        lab::ping(&ns1, ECHO, 5).is_some(),
        "ping a virtual task here"
    );
    assert!(
        lab::ping(&ns1, WHO, 5).is_some(),
        "ping a virtual task there"
    );
    let (sent, got) = lab::udp_exchange_echo(&ns1, ECHO, 7, vec![1, 100, 1400]);
    assert_eq!(sent, got, "UDP echo");

    let (page, _, _) = http_get(&ns1, WHO, "/");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    let body = page.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        body.starts_with("Hostname: who\nNode: node-b\nIP: 10.0.9.20\nRemoteAddr: 10.0.9.2:"),
        "{body}"
    );
    assert!(
        body.contains("\nGET / HTTP/1.1\nHost: 10.0.9.20\nUser-Agent: live-test\n"),
        "{body}"
    );

    let size = 10 << 20;
    let (head, body, hash) = http_get(&ns1, WHO, &format!("/data?size={size}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, size, "the whole body");
    assert_eq!(hash, data_hash(size), "10 MiB from a virtual task, intact");
}
