//! The egress engine end to end (root): a "task" namespace whose default route is a TUN device
//! served by the engine in this process, an "outside" namespace reached from the host's
//! namespace through a veth pair. The task fetches 100 MiB over HTTP (curl), exchanges UDP,
//! pings, is refused with a RST, reaches the host's loopback through the gateway address; the
//! servers see the host's veth address. Skips with a printed reason without CAP_NET_ADMIN.
//!
//! `egress_throughput` (ignored; run by scripts/bench-egress.sh) prints the figures.

#[macro_use]
mod lab;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use sha2::{Digest, Sha256};
use swarmnet::io::egress::{Egress, EgressConfig, EgressStats, FlowStats, IcmpMode, Limits};
use swarmnet::io::tap;
use swarmnet::wire::vnet;

const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 9999;
const SIZE: usize = 100 << 20;
const HOST_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 79, 0, 1);

/// A veth pair from the host's namespace into another; deleted on drop.
struct Veth(String);

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// What the engine thread hands back when stopped.
struct EngineReport {
    stats: EgressStats,
    flows: Vec<FlowStats>,
    icmp: IcmpMode,
    tun_write_errors: u64,
}

/// The engine on a thread of its own, serving the TUN device.
struct Engine {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<EngineReport>>,
}

const TUN: Token = Token(0);
const HOST: Token = Token(1);
const WAKE: Token = Token(2);

impl Engine {
    fn start(dev: tap::TapQueue, cfg: EgressConfig, gso: bool) -> Engine {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || run_engine(poll, dev, cfg, gso, &stop2));
        Engine {
            stop,
            waker,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> Option<EngineReport> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        self.thread.take().map(|t| t.join().expect("engine thread"))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn run_engine(
    mut poll: Poll,
    dev: tap::TapQueue,
    cfg: EgressConfig,
    gso: bool,
    stop: &AtomicBool,
) -> EngineReport {
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    let mut e = if gso {
        Egress::with_gso(cfg, now())
    } else {
        Egress::new(cfg, now())
    };
    e.attach(poll.registry(), HOST).unwrap();
    poll.registry()
        .register(
            &mut SourceFd(&std::os::fd::AsRawFd::as_raw_fd(&dev)),
            TUN,
            Interest::READABLE,
        )
        .unwrap();
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; 65536];
    let mut tun_more = true;
    let mut tun_write_errors = 0u64;
    let skip = if dev.has_vnet_header() {
        vnet::HEADER_LEN
    } else {
        0
    };
    while !stop.load(Ordering::SeqCst) {
        if tun_more {
            tun_more = false;
            for _ in 0..256 {
                match dev.recv(&mut buf) {
                    Ok(n) if n > skip => {
                        if skip > 0 {
                            finish_checksum(&mut buf[..n]);
                        }
                        e.input(now(), &buf[skip..n])
                    }
                    Ok(_) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(err) => panic!("TUN read: {err}"),
                }
                tun_more = true;
            }
        }
        e.handle_timeout_gso(now(), &mut |p, gso| {
            let hdr = match gso {
                // A TCP super-packet: the kernel takes it whole, its checksum partial.
                Some(size) => {
                    let ihl = u16::from(p[0] & 0x0f) * 4;
                    let thl = u16::from(p[usize::from(ihl) + 12] >> 4) * 4;
                    vnet::Repr::tcp4_super_frame(ihl, ihl + thl, size)
                }
                None => vnet::Repr::default(),
            };
            if dev.send_with(&hdr, p).is_err() {
                tun_write_errors += 1;
            }
        });
        let t = now();
        let timeout = if tun_more {
            Some(Duration::ZERO)
        } else {
            e.poll_timeout(t)
                .map(|at| Duration::from_nanos(at.saturating_sub(t)))
        };
        poll.poll(&mut events, timeout).unwrap();
        for ev in events.iter() {
            match ev.token() {
                TUN => tun_more = true,
                HOST => e.host_ready(),
                _ => {}
            }
        }
    }
    EngineReport {
        stats: e.stats().clone(),
        flows: e.flows(),
        icmp: e.icmp_mode(),
        tun_write_errors,
    }
}

/// Finishes the partial checksum of a packet read behind a virtio-net header (a TSO
/// super-packet or a packet whose checksum the task's kernel left to the device), as the
/// node's data path does for a TAP's frames: the engine takes packets with full checksums.
fn finish_checksum(frame: &mut [u8]) {
    let Ok(h) = vnet::Repr::parse(frame) else {
        return;
    };
    if !h.needs_csum() {
        return;
    }
    let p = &mut frame[vnet::HEADER_LEN..];
    let (start, at) = (
        usize::from(h.csum_start),
        usize::from(h.csum_start + h.csum_offset),
    );
    if at + 2 > p.len() || start > p.len() {
        return;
    }
    let sum = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&p[start..])
        .ones_complement();
    p[at..at + 2].copy_from_slice(&sum.to_ne_bytes());
}

/// The namespaces, links and engine of one run; everything is removed on drop (engine first,
/// so the TUN device goes with the task's namespace).
struct Setup {
    engine: Engine,
    _veth: Veth,
    outside: lab::Ns,
    task: lab::Ns,
    /// The host's address on the veth, the outside server's, the gateway.
    host_ip: Ipv4Addr,
    server_ip: Ipv4Addr,
    gateway: Ipv4Addr,
    names: Vec<String>,
}

/// `tag` (0-2) tells apart the tests of one process, which may run at once.
fn setup(tag: u32, tun_mtu: u16, gso: bool) -> Setup {
    let id = (std::process::id() % 40) * 3 + tag;
    let task_ns = format!("sneg-task{id}");
    let out_ns = format!("sneg-out{id}");
    let host_if = format!("sneg-h{id}");
    let out_if = format!("sneg-o{id}");
    let tun_if = format!("sneg-tun{id}");
    let task = lab::Ns::new(&task_ns);
    let outside = lab::Ns::new(&out_ns);
    let _ = Command::new("ip").args(["link", "del", &host_if]).output();
    lab::ip(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", &out_if, "netns", &out_ns,
    ]);
    let veth = Veth(host_if.clone());
    let (host_ip, server_ip) = (
        Ipv4Addr::new(10, 199, id as u8, 1),
        Ipv4Addr::new(10, 199, id as u8, 2),
    );
    let gateway = Ipv4Addr::new(10, 199, 128 + id as u8, 1);
    let task_ip = Ipv4Addr::new(10, 199, 128 + id as u8, 2);
    lab::ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
    lab::ip(&["link", "set", &host_if, "up"]);
    lab::ip(&[
        "-n",
        &out_ns,
        "addr",
        "add",
        &format!("{server_ip}/24"),
        "dev",
        &out_if,
    ]);
    lab::ip(&["-n", &out_ns, "link", "set", &out_if, "up"]);
    // The TUN device is made here and moved into the task's namespace; its descriptor stays.
    let dev = if gso {
        tap::open_tun_offload(&tun_if)
    } else {
        tap::open_tun(&tun_if)
    }
    .expect("open TUN");
    lab::ip(&["link", "set", &tun_if, "netns", &task_ns]);
    lab::ip(&[
        "-n",
        &task_ns,
        "link",
        "set",
        &tun_if,
        "mtu",
        &tun_mtu.to_string(),
    ]);
    lab::ip(&[
        "-n",
        &task_ns,
        "addr",
        "add",
        &format!("{task_ip}/24"),
        "dev",
        &tun_if,
    ]);
    lab::ip(&["-n", &task_ns, "link", "set", &tun_if, "up"]);
    lab::ip(&[
        "-n",
        &task_ns,
        "route",
        "add",
        "default",
        "via",
        &gateway.to_string(),
    ]);
    let engine = Engine::start(
        dev,
        EgressConfig {
            gateway,
            prefix: 24,
            host_loopback: HOST_LOOPBACK,
            mtu: tun_mtu,
            seed: 0x5eed,
            limits: Limits {
                tcp_buffer: std::env::var("EGRESS_TCP_BUFFER")
                    .ok()
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(Limits::default().tcp_buffer),
                ..Limits::default()
            },
        },
        gso,
    );
    Setup {
        engine,
        _veth: veth,
        outside,
        task,
        host_ip,
        server_ip,
        gateway,
        names: vec![task_ns, out_ns, host_if, out_if, tun_if],
    }
}

/// Period of the body's pattern: not a power of two, so a lost, repeated or misordered
/// segment or chunk changes the hash.
const PERIOD: usize = (1 << 20) - 3;

/// The body's pattern, once (`PERIOD` bytes and one chunk more, so any chunk is one slice):
/// the server then only copies, and costs the same on both paths of the benchmark.
fn pattern() -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        (0..PERIOD + CHUNK)
            .map(|k| ((k % PERIOD) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56)
            .map(|b| b as u8)
            .collect()
    })
}

const CHUNK: usize = 1 << 16;

/// The body's bytes from `offset`, at most `CHUNK` of them.
fn body_chunk(offset: usize, len: usize) -> &'static [u8] {
    let start = offset % PERIOD;
    &pattern()[start..start + len.min(CHUNK)]
}

fn body_sha256(size: usize) -> String {
    let mut h = Sha256::new();
    let mut off = 0;
    while off < size {
        let c = body_chunk(off, size - off);
        h.update(c);
        off += c.len();
    }
    format!("{:x}", h.finalize())
}

/// A tiny HTTP/1.0 server: every GET gets `size` pattern bytes; the clients' addresses are
/// recorded. Stops when `stop` is set and a connection wakes it.
struct Http {
    addr: SocketAddrV4,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    ns: String,
    thread: Option<JoinHandle<()>>,
}

impl Http {
    fn start(ns: &str, addr: SocketAddrV4, size: usize) -> Http {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peers.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let serve = move || {
            let l = TcpListener::bind(addr).expect("bind HTTP server");
            tx.send(()).unwrap();
            for c in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                if let Ok(a) = c.peer_addr() {
                    p.lock().unwrap().push(a);
                }
                std::thread::spawn(move || serve_http(c, size));
            }
        };
        let thread = if ns.is_empty() {
            std::thread::spawn(serve)
        } else {
            lab::spawn_in_ns(ns, serve)
        };
        rx.recv_timeout(Duration::from_secs(10))
            .expect("HTTP server bound");
        Http {
            addr,
            peers,
            stop,
            ns: ns.to_string(),
            thread: Some(thread),
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let addr = self.addr;
        let wake = move || {
            let _ = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(1));
        };
        if self.ns.is_empty() {
            wake();
        } else {
            lab::in_ns(&self.ns, wake);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_http(c: TcpStream, size: usize) {
    let mut r = BufReader::new(match c.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut c = c;
    let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\n\r\n");
    if c.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut off = 0;
    while off < size {
        let chunk = body_chunk(off, size - off);
        if c.write_all(chunk).is_err() {
            return;
        }
        off += chunk.len();
    }
}

/// A UDP server answering each datagram with "<payload> from <client address>".
fn udp_server(ns: &str, addr: SocketAddrV4) -> JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = lab::spawn_in_ns(ns, move || {
        let s = UdpSocket::bind(addr).expect("bind UDP server");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        // Serves until quiet for the timeout; the test's few datagrams come well before.
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let mut answer = buf[..n].to_vec();
            answer.extend_from_slice(format!(" from {from}").as_bytes());
            let _ = s.send_to(&answer, from);
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("UDP server bound");
    t
}

/// Runs `curl ARGS` in the task's namespace: (exit code, stdout, elapsed).
fn curl(ns: &str, args: &[&str]) -> (i32, String, Duration) {
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        start.elapsed(),
    )
}

fn skip() -> Option<String> {
    if let Some(why) = lab::skip_reason() {
        return Some(why);
    }
    if Command::new("curl").arg("--version").output().is_err() {
        return Some("curl is not installed (the task's HTTP client)".into());
    }
    None
}

fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    for args in [&["netns", "list"][..], &["-o", "link", "show"][..]] {
        let out = Command::new("ip").args(args).output().expect("ip");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("sneg-") {
                found.push(line.to_string());
            }
        }
    }
    found
}

/// The task fetches 100 MiB from the outside server with curl, checked by sha256; the server
/// saw the host's veth address only.
fn fetch_and_check(s: &Setup, http: &Http) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    let url = format!("http://{}:{HTTP_PORT}/big", s.server_ip);
    let (code, out, took) = curl(&s.task.0, &["-o", file.to_str().unwrap(), &url]);
    assert_eq!(code, 0, "curl {url}: {out}");
    let got = std::fs::read(&file).unwrap();
    assert_eq!(got.len(), SIZE, "bytes fetched");
    let digest = format!("{:x}", Sha256::digest(&got));
    assert_eq!(digest, body_sha256(SIZE), "sha256 of the body");
    eprintln!("100 MiB through the engine in {took:?}");
    let peers = http.peers.lock().unwrap().clone();
    assert!(!peers.is_empty());
    for p in &peers {
        assert_eq!(
            p.ip(),
            std::net::IpAddr::V4(s.host_ip),
            "server's view of the client"
        );
    }
}

fn no_leftovers(names: &[String]) {
    let left: Vec<String> = leftovers()
        .into_iter()
        .filter(|l| names.iter().any(|n| l.contains(n.as_str())))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The same fetch with the engine's TCP segments handed to the task as GSO super-packets
/// (partial checksums, segment size the task's MSS), as a TAP with a virtio-net header takes.
#[test]
fn a_task_fetches_through_gso_super_packets() {
    if let Some(why) = skip() {
        eprintln!("SKIPPED {}: {why}", module_path!());
        return;
    }
    let names;
    {
        let mut s = setup(1, 1500, true);
        names = s.names.clone();
        let http = Http::start(
            &s.outside.0,
            SocketAddrV4::new(s.server_ip, HTTP_PORT),
            SIZE,
        );
        fetch_and_check(&s, &http);
        drop(http);
        let report = s.engine.stop().expect("engine report");
        assert_eq!(report.tun_write_errors, 0);
        // Far fewer packets than one per 1448-byte segment (72,000 for 100 MiB).
        assert!(report.stats.packets_out < 40_000, "{:?}", report.stats);
    }
    no_leftovers(&names);
}

#[test]
fn a_task_reaches_the_outside_through_the_egress_engine() {
    if let Some(why) = skip() {
        eprintln!("SKIPPED {}: {why}", module_path!());
        return;
    }
    let names;
    {
        let mut s = setup(0, 1500, false);
        names = s.names.clone();
        let http = Http::start(
            &s.outside.0,
            SocketAddrV4::new(s.server_ip, HTTP_PORT),
            SIZE,
        );
        let _udp = udp_server(&s.outside.0, SocketAddrV4::new(s.server_ip, UDP_PORT));

        fetch_and_check(&s, &http);

        // UDP request and response; the server names the host's address as the sender.
        let server = SocketAddrV4::new(s.server_ip, UDP_PORT);
        let answer = lab::in_ns(&s.task.0, move || {
            let u = UdpSocket::bind("0.0.0.0:0").unwrap();
            u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 2048];
            for _ in 0..5 {
                u.send_to(b"hello", server).unwrap();
                if let Ok((n, from)) = u.recv_from(&mut buf) {
                    return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
                }
            }
            None
        })
        .expect("a UDP answer");
        assert!(
            answer.0.starts_with(&format!("hello from {}:", s.host_ip)),
            "{answer:?}"
        );
        assert_eq!(answer.1, SocketAddr::V4(server), "the answer's source");

        // Half-close: the task sends, shuts its write side, and still reads the server's
        // answer, which the server sends only after it saw the task's FIN.
        let half = SocketAddrV4::new(s.server_ip, HTTP_PORT + 3);
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lab::spawn_in_ns(&s.outside.0, move || {
            let l = TcpListener::bind(half).expect("bind");
            tx.send(()).unwrap();
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            c.write_all(format!("got {} bytes", got.len()).as_bytes())
                .unwrap();
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let answer = lab::in_ns(&s.task.0, move || {
            let mut c = TcpStream::connect_timeout(&half.into(), Duration::from_secs(5)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(&[7u8; 100_000]).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut a = String::new();
            c.read_to_string(&mut a).map(|_| a)
        });
        assert_eq!(
            answer.expect("the answer after the task's FIN"),
            "got 100000 bytes"
        );
        sink.join().unwrap();

        // Ping, to the outside and to the gateway (the host's loopback).
        let rtt = lab::ping(&s.task.0, s.server_ip, 5).expect("ping the outside");
        eprintln!("ping through the engine: {rtt:?}");
        lab::ping(&s.task.0, s.gateway, 5).expect("ping the gateway");

        // A refused port: curl fails with "connection refused", quickly.
        let refused = format!("http://{}:1/", s.server_ip);
        let (code, out, took) = curl(&s.task.0, &[&refused]);
        assert_eq!(code, 7, "curl's 'failed to connect': {out}");
        // curl 7.x says "Connection refused", 8.x "Couldn't connect to server" (ECONNREFUSED).
        assert!(
            out.contains("refused") || out.contains("Couldn't connect"),
            "{out}"
        );
        assert!(took < Duration::from_secs(2), "refused after {took:?}");

        // The gateway address reaches a server on the host's loopback.
        let l = TcpListener::bind(SocketAddrV4::new(HOST_LOOPBACK, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let local = Http::start("", SocketAddrV4::new(HOST_LOOPBACK, port), 11);
        let gw_url = format!("http://{}:{port}/", s.gateway);
        let (code, out, _) = curl(
            &s.task.0,
            &["-o", "/dev/null", "-w", "%{size_download}", &gw_url],
        );
        assert_eq!((code, out.as_str()), (0, "11"), "{gw_url}");
        assert!(!local.peers.lock().unwrap().is_empty());
        drop(local);
        drop(http);

        let report = s.engine.stop().expect("engine report");
        eprintln!("engine: {:?}, ICMP via {:?}", report.stats, report.icmp);
        for f in &report.flows {
            eprintln!("  flow {f:?}");
        }
        assert_eq!(report.tun_write_errors, 0);
        assert!(report.stats.tcp_opened >= 3);
        assert!(report.stats.tcp_refused >= 1);
        assert_ne!(report.icmp, IcmpMode::None);
    }
    no_leftovers(&names);
}

/// Figures for BENCHMARKS.md (scripts/bench-egress.sh): one TCP flow outside -> task through
/// the engine and the same from the host's namespace, and connections per second.
#[test]
#[ignore]
fn egress_throughput() {
    if let Some(why) = skip() {
        eprintln!("SKIPPED {}: {why}", module_path!());
        return;
    }
    let mtu: u16 = std::env::var("EGRESS_MTU")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1500);
    let size: usize = std::env::var("EGRESS_BYTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1 << 30);
    let gso = std::env::var("EGRESS_GSO").is_ok_and(|g| g == "1");
    let s = setup(2, mtu, gso);
    let _http = Http::start(
        &s.outside.0,
        SocketAddrV4::new(s.server_ip, HTTP_PORT),
        size,
    );
    let url = format!("http://{}:{HTTP_PORT}/big", s.server_ip);
    let fetch = |ns: Option<&str>| -> f64 {
        let mut cmd = Command::new(if ns.is_some() { "ip" } else { "curl" });
        if let Some(ns) = ns {
            cmd.args(["netns", "exec", ns, "curl"]);
        }
        let out = cmd
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{time_total}",
                &url,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut f = text.split_whitespace();
        let bytes: f64 = f.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
        let secs: f64 = f.next().and_then(|x| x.parse().ok()).unwrap_or(1.0);
        assert_eq!(
            bytes as usize,
            size,
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bytes * 8.0 / secs / 1e9
    };
    for round in 0..3 {
        let host = fetch(None);
        let task = fetch(Some(&s.task.0));
        println!(
            "round {round}: outside -> task, MTU {mtu}, GSO {gso}, {} MiB: host namespace {host:.2} Gbit/s, task through the engine {task:.2} Gbit/s, ratio {:.2}",
            size >> 20,
            task / host
        );
    }
    // Task -> outside: the task (or the host) writes `size` bytes to a sink in the outside
    // namespace, which answers with the count once it has read them all.
    let sink_addr = SocketAddrV4::new(s.server_ip, HTTP_PORT + 2);
    let (tx, rx) = std::sync::mpsc::channel();
    let _sink = lab::spawn_in_ns(&s.outside.0, move || {
        let l = TcpListener::bind(sink_addr).expect("bind sink");
        tx.send(()).unwrap();
        for _ in 0..6 {
            let Ok((mut c, _)) = l.accept() else { return };
            let mut buf = vec![0u8; 1 << 16];
            let mut n = 0u64;
            while let Ok(k) = c.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            let _ = c.write_all(&n.to_be_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let upload = move || -> f64 {
        let start = Instant::now();
        let mut c = TcpStream::connect(sink_addr).expect("connect to the sink");
        let mut sent = 0;
        while sent < size {
            let chunk = body_chunk(sent, size - sent);
            c.write_all(chunk).unwrap();
            sent += chunk.len();
        }
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut n = [0u8; 8];
        c.read_exact(&mut n).unwrap();
        assert_eq!(u64::from_be_bytes(n), size as u64, "bytes the sink read");
        size as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
    };
    for round in 0..3 {
        let host = upload();
        let task = lab::in_ns(&s.task.0, upload);
        println!(
            "round {round}: task -> outside, MTU {mtu}, GSO {gso}, {} MiB: host namespace {host:.2} Gbit/s, task through the engine {task:.2} Gbit/s, ratio {:.2}",
            size >> 20,
            task / host
        );
    }
    // Connections per second: connect, 11-byte answer, close, one after another, 2 s.
    let _small = Http::start(
        &s.outside.0,
        SocketAddrV4::new(s.server_ip, HTTP_PORT + 1),
        11,
    );
    let server = SocketAddrV4::new(s.server_ip, HTTP_PORT + 1);
    let run = move || {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            let mut c = TcpStream::connect_timeout(&server.into(), Duration::from_secs(5))
                .expect("connect");
            c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut v = Vec::new();
            c.read_to_end(&mut v).unwrap();
            assert!(v.ends_with(&[0u8; 0]) && v.len() > 11);
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let host_cps = run();
    let task_cps = lab::in_ns(&s.task.0, run);
    println!("connections/s (connect, GET, 11 bytes, close; one at a time): host namespace {host_cps:.0}, task through the engine {task_cps:.0}");
}
