//! Two virtual tasks on one simulated wire, on virtual time: a fetch client against whoami.

use super::*;
use crate::topology::{FetchHost, FetchTarget};
use sha2::{Digest, Sha256};

fn spec(name: &str, last: u8, app: App) -> VirtSpec {
    let ip = Ipv4Addr::new(10, 0, 9, last);
    VirtSpec {
        name: name.into(),
        hostname: name.into(),
        node: "node-1".into(),
        app,
        mac: MacAddr::from_ipv4(ip),
        ip,
        prefix: 24,
        gateway: Ipv4Addr::new(10, 0, 9, 1),
        mtu: 1450,
        seed: u64::from(last),
        reach: Default::default(),
    }
}

/// Runs both tasks for `ms` milliseconds of virtual time, passing frames between them.
fn run(a: &mut VirtualTask, b: &mut VirtualTask, ms: u64, now: &mut Nanos) {
    let end = *now + ms * 1_000_000;
    while *now < end {
        let mut to_b = Vec::new();
        let mut to_a = Vec::new();
        a.handle_timeout(*now, &mut |f| to_b.push(f.to_vec()));
        b.handle_timeout(*now, &mut |f| to_a.push(f.to_vec()));
        for f in &to_b {
            b.input(f);
        }
        for f in &to_a {
            a.input(f);
        }
        if to_a.is_empty() && to_b.is_empty() {
            let next = [a.poll_timeout(*now), b.poll_timeout(*now)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            *now = next.clamp(*now + 1_000, end);
        }
    }
}

#[test]
fn fetch_gets_whoami_data_intact() {
    let size = 300_000u64;
    let target = FetchTarget {
        host: FetchHost::Ip(Ipv4Addr::new(10, 0, 9, 2)),
        port: 80,
        path: format!("/data?size={size}"),
    };
    let mut now = 1_000_000_000;
    let mut server = VirtualTask::new(&spec("who", 2, App::Whoami), now);
    let mut client = VirtualTask::new(&spec("get", 3, App::Fetch(target)), now);
    run(&mut client, &mut server, 3_000, &mut now);
    let events = client.take_events();
    let want: Vec<u8> = (0..size).map(apps::data_byte).collect();
    let want = format!(
        "GET http://10.0.9.2:80/data?size={size}: 200, {size} bytes, sha256 {}",
        Sha256::digest(&want)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert!(events.len() >= 2, "a fetch every second: {events:?}");
    assert!(events.iter().all(|e| *e == want), "{events:?}\nwant {want}");
}

#[test]
fn whoami_tells_its_name_node_address_and_the_request() {
    let target = FetchTarget {
        host: FetchHost::Ip(Ipv4Addr::new(10, 0, 9, 2)),
        port: 80,
        path: "/".into(),
    };
    let mut now = 0;
    let mut server = VirtualTask::new(&spec("who", 2, App::Whoami), now);
    let mut client = VirtualTask::new(&spec("get", 3, App::Fetch(target)), now);
    run(&mut client, &mut server, 500, &mut now);
    let events = client.take_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with("GET http://10.0.9.2:80/: 200, "),
        "{events:?}"
    );
    // The page itself.
    let who = Identity {
        name: "who".into(),
        node: "node-1".into(),
        ip: Ipv4Addr::new(10, 0, 9, 2),
        gateway: Ipv4Addr::new(10, 0, 9, 1),
        reach: Reach::All,
    };
    let head = b"GET / HTTP/1.1\r\nHost: 10.0.9.2\r\nUser-Agent: curl/8";
    let r = apps::respond(&who, "10.0.9.3:40000", head);
    let text = String::from_utf8_lossy(r.head()).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.ends_with(
            "\r\n\r\nHostname: who\nNode: node-1\nIP: 10.0.9.2\nRemoteAddr: 10.0.9.3:40000\n\
             GET / HTTP/1.1\nHost: 10.0.9.2\nUser-Agent: curl/8\n"
        ),
        "{text}"
    );
    let r = apps::respond(&who, "-", b"GET /data?size=5 HTTP/1.1");
    assert!(String::from_utf8_lossy(r.head()).contains("Content-Length: 5\r\n"));
    let r = apps::respond(&who, "-", b"POST / HTTP/1.1");
    assert!(String::from_utf8_lossy(r.head()).starts_with("HTTP/1.1 405"));
}

#[test]
fn a_full_queue_drops_and_counts() {
    let mut t = VirtualTask::new(&spec("e", 2, App::Echo), 0);
    let frame = [0u8; 60];
    for _ in 0..RX_QUEUE {
        assert!(t.input(&frame));
    }
    assert!(!t.input(&frame));
    assert!(!t.input(&[0u8; 1600]), "larger than the MTU");
    assert_eq!(t.dropped, 2);
    // Garbage is taken and ignored.
    t.handle_timeout(0, &mut |_| panic!("nothing to answer"));
    assert!(!t.has_input());
}

#[test]
fn a_first_syn_from_an_unknown_client_is_answered_at_once() {
    let mut web = VirtualTask::new(&spec("web", 2, App::Whoami), 1_000_000_000);
    let client = Ipv4Addr::new(10, 0, 9, 77);
    let mut syn = Vec::new();
    etherparse::PacketBuilder::ethernet2(
        MacAddr::from_ipv4(client).0,
        MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 9, 2)).0,
    )
    .ipv4(client.octets(), [10, 0, 9, 2], 64)
    .tcp(40000, 80, 1, 64240)
    .syn()
    .write(&mut syn, &[])
    .unwrap();
    web.handle_timeout(1_000_000_000, &mut |_| {});
    assert!(web.input(&syn));
    let mut sent = Vec::new();
    web.handle_timeout(1_001_000_000, &mut |f| sent.push(f.to_vec()));
    // No ARP request for the client: the SYN-ACK goes out in the same round.
    assert!(sent.iter().all(|f| f[12..14] != [0x08, 0x06]), "{sent:?}");
    let synack = sent
        .iter()
        .find(|f| f.len() >= 54 && f[23] == 6)
        .expect("a TCP answer");
    assert_eq!(synack[47] & 0x12, 0x12, "SYN-ACK");
}

#[test]
fn whoami_shows_the_client_a_proxy_v2_header_from_the_sandbox_names() {
    let mut now = 1_000_000_000;
    let mut server = VirtualTask::new(&spec("who", 2, App::Whoami), now);
    let ip = Ipv4Addr::new(10, 0, 9, 5);
    let mut sb = sandbox::Sandbox::new(
        &sandbox::SandboxSpec {
            mac: MacAddr::from_ipv4(ip),
            ip,
            prefix: 24,
            gateway: Ipv4Addr::new(10, 0, 9, 1),
            mtu: 1450,
            seed: 5,
        },
        now,
    );
    let (h, port) = sb
        .connect(
            (Ipv4Addr::new(10, 0, 9, 2), 80),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
    let mut req = proxy::encode_v4(
        "192.0.2.7:40000".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
    )
    .to_vec();
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: mesh\r\n\r\n");
    let (mut sent, mut got) = (false, Vec::new());
    let end = now + 3_000_000_000;
    while now < end {
        let mut to_server = Vec::new();
        let mut to_sb = Vec::new();
        sb.poll(now, &mut |f| to_server.push(f.to_vec()));
        server.handle_timeout(now, &mut |f| to_sb.push(f.to_vec()));
        to_server.iter().for_each(|f| assert!(server.input(f)));
        to_sb.iter().for_each(|f| assert!(sb.input(f)));
        let s = sb.tcp(h);
        if !sent && s.may_send() {
            assert_eq!(s.send_slice(&req), Ok(req.len()));
            sent = true;
        }
        while s.can_recv() {
            let _ = s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            });
        }
        if sent && !s.may_recv() {
            break;
        }
        now += 1_000_000;
    }
    let page = String::from_utf8_lossy(&got);
    assert!(page.contains("RemoteAddr: 192.0.2.7:40000\n"), "{page}");
    assert!(
        page.contains(&format!("ProxiedBy: 10.0.9.5:{port}\n")),
        "{page}"
    );
}

#[test]
fn each_address_is_reached_through_one_interface() {
    let net: ipnet::Ipv4Net = "10.0.9.0/24".parse().unwrap();
    let (inside, outside) = (Ipv4Addr::new(10, 0, 9, 5), Ipv4Addr::new(198, 51, 100, 1));
    assert!(Reach::All.takes(inside) && Reach::All.takes(outside));
    assert!(Reach::Subnet(net).takes(inside) && !Reach::Subnet(net).takes(outside));
    let way_out = Reach::Outside(vec![net]);
    assert!(!way_out.takes(inside) && way_out.takes(outside));
}
