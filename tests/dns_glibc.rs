//! glibc as the client: `getent` inside a namespace whose resolv.conf names a resolver that
//! this test serves with `DnsTable::respond` and forwards with `io::resolver` (a fake upstream
//! on loopback). Checks what a real stub resolver does with our answers: the VIP, every task of
//! a `tasks.` name past 512 bytes (TC, then TCP), a forwarded name and NXDOMAIN. Needs root;
//! skips with a printed reason.

mod lab;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use swarmnet::dataplane::dns::{DnsTable, Outcome, Transport};
use swarmnet::dataplane::services::{Backend, NetServices, Service, ServiceView};
use swarmnet::io::netns::{self, OwnedNetns};
use swarmnet::io::resolver::{ForwardClient, Forwarder, ResolverConfig};

const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

fn view() -> ServiceView {
    let backend = |task: String, ip: Ipv4Addr| Backend { task, ip };
    ServiceView {
        networks: vec![NetServices {
            network: "my-net".into(),
            ingress: false,
            services: vec![
                Service {
                    name: "my-web".into(),
                    aliases: vec![],
                    vip: Some(Ipv4Addr::new(10, 0, 1, 2)),
                    backends: (0..3)
                        .map(|i| {
                            backend(
                                format!("my-web.{}.t{i}", i + 1),
                                Ipv4Addr::new(10, 0, 1, 3 + i),
                            )
                        })
                        .collect(),
                },
                Service {
                    name: "many".into(),
                    aliases: vec![],
                    vip: None,
                    backends: (0..100)
                        .map(|i| {
                            backend(
                                format!("many.{}.m{i}", i + 1),
                                Ipv4Addr::new(10, 0, 2, 2 + i),
                            )
                        })
                        .collect(),
                },
            ],
        }],
    }
}

/// A fake upstream in the host's namespace: `example.test` -> 192.0.2.1, anything else
/// NXDOMAIN (authoritative).
fn upstream(stop: Arc<AtomicBool>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let sock = UdpSocket::bind((Ipv4Addr::new(127, 0, 53, 40), 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::new();
            m.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_recursion_desired(q.recursion_desired())
                .set_recursion_available(true);
            let question = q.queries()[0].clone();
            let known = question.name().to_ascii().trim_end_matches('.') == "example.test";
            if known && question.query_type() == hickory_proto::rr::RecordType::A {
                m.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                ));
            } else if !known {
                m.set_response_code(ResponseCode::NXDomain)
                    .set_authoritative(true);
            }
            m.add_query(question);
            let _ = sock.send_to(&m.to_vec().unwrap(), from);
        }
    });
    (addr, t)
}

/// Waits (bounded) for the forwarder's answer to `token`.
fn wait_answer(client: &ForwardClient, token: u64) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) = client.try_recv() {
            if a.token == token {
                return a.answer;
            }
        }
        assert!(Instant::now() < deadline, "no forwarded answer");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The resolver at 127.0.0.11:53 inside namespace `ns`, UDP and TCP, until `stop`.
fn serve(
    ns: &str,
    table: DnsTable,
    forwarder: &Forwarder,
    stop: Arc<AtomicBool>,
    tcp_queries: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let file = std::fs::File::open(netns::path(ns)).unwrap();
    let client = forwarder.client(|| {});
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        netns::enter(&file).unwrap();
        let udp = UdpSocket::bind((RESOLVER, 53)).unwrap();
        udp.set_nonblocking(true).unwrap();
        let tcp = TcpListener::bind((RESOLVER, 53)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let mut waiting: HashMap<u64, SocketAddr> = HashMap::new();
        let (mut token, mut entropy) = (0u64, 0x5eedu64);
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                idle = false;
                entropy = entropy.wrapping_mul(6364136223846793005).wrapping_add(1);
                let transport = Transport::Udp { max: 1472 };
                match table.respond(&[0], &buf[..n], transport, entropy, &mut out) {
                    Outcome::Answered => {
                        let _ = udp.send_to(&out, from);
                    }
                    Outcome::Forward => {
                        token += 1;
                        if client.submit(token, &buf[..n], transport).is_ok() {
                            waiting.insert(token, from);
                        }
                    }
                    Outcome::Drop(_) => {}
                }
            }
            while let Some(a) = client.try_recv() {
                if let Some(to) = waiting.remove(&a.token) {
                    let _ = udp.send_to(&a.answer, to);
                }
            }
            if let Ok((mut conn, _)) = tcp.accept() {
                idle = false;
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                // A stub resolver may ask several questions on one connection.
                loop {
                    let mut len = [0u8; 2];
                    if conn.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut q).is_err() {
                        break;
                    }
                    tcp_queries.fetch_add(1, Ordering::Relaxed);
                    let answer = match table.respond(&[0], &q, Transport::Tcp, entropy, &mut out) {
                        Outcome::Answered => out.clone(),
                        Outcome::Forward => {
                            token += 1;
                            client.submit(token, &q, Transport::Tcp).unwrap();
                            wait_answer(&client, token)
                        }
                        Outcome::Drop(_) => break,
                    };
                    let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&answer);
                    if conn.write_all(&framed).is_err() {
                        break;
                    }
                }
            }
            if idle {
                // Non-blocking sockets polled by a test server: a short pause between rounds.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("the resolver is listening");
    thread
}

fn getent(ns: &str, dir: &std::path::Path, args: &str) -> (i32, String) {
    let file = dir.join("getent.out");
    let code = netns::exec_in(
        ns,
        &[
            "sh".into(),
            "-c".into(),
            format!("getent {args} > {} 2>&1", file.display()),
        ],
    )
    .expect("exec_in");
    (code, std::fs::read_to_string(&file).unwrap_or_default())
}

#[test]
fn getent_resolves_through_the_responder_and_the_forwarder() {
    if let Some(why) = lab::skip_reason() {
        eprintln!("SKIPPED {}: {why}", module_path!());
        return;
    }
    if !std::path::Path::new("/etc/resolv.conf").exists() {
        eprintln!(
            "SKIPPED {}: the host has no /etc/resolv.conf to hide",
            module_path!()
        );
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (up, up_thread) = upstream(Arc::clone(&stop));
    let forwarder = Forwarder::start(ResolverConfig {
        upstreams: vec![up],
        timeout: Duration::from_secs(2),
        max_in_flight: 64,
    })
    .unwrap();
    let p = lab::prefix("dg");
    let ns = OwnedNetns::create(&format!("{p}-dns")).expect("namespace");
    lab::ip(&["-n", ns.name(), "link", "set", "lo", "up"]);
    // getaddrinfo (AI_ADDRCONFIG) asks for IPv4 names only where an interface other than lo
    // has an IPv4 address: a veth pair inside the namespace, as a task's eth0.
    let (a, b) = (format!("{p}d0"), format!("{p}d1"));
    lab::ip(&[
        "-n",
        ns.name(),
        "link",
        "add",
        &a,
        "type",
        "veth",
        "peer",
        "name",
        &b,
    ]);
    lab::ip(&["-n", ns.name(), "addr", "add", "10.0.1.250/24", "dev", &a]);
    lab::ip(&["-n", ns.name(), "link", "set", &a, "up"]);
    lab::ip(&["-n", ns.name(), "link", "set", &b, "up"]);
    ns.set_resolv_conf(RESOLVER.into()).unwrap();
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let server = serve(
        ns.name(),
        DnsTable::new(&view()),
        &forwarder,
        Arc::clone(&stop),
        Arc::clone(&tcp_queries),
    );
    let dir = tempfile::tempdir().unwrap();

    let (code, text) = getent(ns.name(), dir.path(), "hosts my-web");
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["10.0.1.2", "my-web"]
    );

    // 100 tasks do not fit in 512 bytes: glibc gets TC over UDP and asks again over TCP.
    assert_eq!(
        tcp_queries.load(Ordering::Relaxed),
        0,
        "a small answer fits in UDP"
    );
    let (code, text) = getent(ns.name(), dir.path(), "ahostsv4 tasks.many");
    assert!(
        tcp_queries.load(Ordering::Relaxed) > 0,
        "glibc retried over TCP"
    );
    assert_eq!(code, 0, "{text}");
    let got: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(got.len(), 100, "{text}");
    assert!(got.iter().all(|ip| ip.starts_with("10.0.2.")));

    // Not a name of the swarm: forwarded to the (fake) host resolver.
    let (code, text) = getent(ns.name(), dir.path(), "ahostsv4 example.test");
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("192.0.2.1 "), "{text}");
    let (code, _) = getent(ns.name(), dir.path(), "hosts nosuch.test");
    assert_eq!(code, 2, "getent's exit code for a name that does not exist");

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    up_thread.join().unwrap();
}
