//! A lab of network namespaces for live tests: hosts joined by a bridge, swarmnet nodes run
//! inside them, and traffic from the test's own code on threads that entered a task's namespace.
//!
//! Everything created is removed when the guards drop, also when a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use swarmnet::io::netns;

/// Why live tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !netns::have_net_admin() {
        return Some("needs CAP_NET_ADMIN (run as root; CI does)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

/// Skips the calling test loudly when the lab cannot run.
#[macro_export]
macro_rules! require_lab {
    () => {
        if let Some(why) = lab::skip_reason() {
            eprintln!("SKIPPED {}: {why}", module_path!());
            return;
        }
    };
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named namespace, deleted on drop.
pub struct Ns(pub String);

impl Ns {
    pub fn new(name: &str) -> Ns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        Ns(name.to_string())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A unique short prefix for this test's names (interface names are limited to 15 bytes).
pub fn prefix(tag: &str) -> String {
    format!("sn{}{}", std::process::id() % 10000, tag)
}

/// Hosts on one underlay segment: a bridge in its own namespace, one veth per host.
pub struct Underlay {
    pub wire: Ns,
    pub hosts: Vec<Ns>,
}

impl Underlay {
    /// Hosts named PREFIX-hN with addresses 192.0.2.(10+N)/24.
    pub fn new(prefix: &str, hosts: usize) -> Underlay {
        let wire = Ns::new(&format!("{prefix}-wire"));
        ip(&["-n", &wire.0, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &wire.0, "link", "set", "br0", "up"]);
        let mut hs = Vec::new();
        for i in 0..hosts {
            let h = Ns::new(&format!("{prefix}-h{i}"));
            let inside = format!("{prefix}u{i}");
            ip(&[
                "-n", &wire.0, "link", "add", &inside, "type", "veth", "peer", "name", "ul0",
                "netns", &h.0,
            ]);
            ip(&["-n", &wire.0, "link", "set", &inside, "master", "br0", "up"]);
            let addr = format!("{}/24", host_addr(i));
            ip(&["-n", &h.0, "addr", "add", &addr, "dev", "ul0"]);
            ip(&["-n", &h.0, "link", "set", "ul0", "up"]);
            hs.push(h);
        }
        Underlay { wire, hosts: hs }
    }
}

pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + i as u8)
}

/// A `swarmnet run` process inside a host namespace; SIGTERM and wait on drop.
pub struct NodeProc {
    pub child: Child,
    /// Lines the node prints on stdout after `ready`.
    pub lines: mpsc::Receiver<String>,
    pub counters: PathBuf,
    pub dir: PathBuf,
    pub task_netns: Vec<String>,
    host: String,
    workers: u16,
}

impl NodeProc {
    /// Starts a node with `topology` (TOML text) in host namespace `host`, waits for `ready`.
    /// Its files (topology, counters, ESP sequence numbers) live in a fresh directory.
    pub fn start(host: &str, topology: &str, task_netns: &[&str], workers: u16) -> NodeProc {
        let dir = std::env::temp_dir().join(format!("swarmnet-live-{host}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("topology.toml"), topology).unwrap();
        let (child, lines, ready) = Self::spawn(host, &dir, workers);
        // Built before waiting, so that a node that never gets ready is still cleaned up.
        let node = NodeProc {
            child,
            lines,
            counters: dir.join("counters.json"),
            dir,
            task_netns: task_netns.iter().map(|s| s.to_string()).collect(),
            host: host.to_string(),
            workers,
        };
        node.wait_ready(ready);
        node
    }

    fn wait_ready(&self, ready: mpsc::Receiver<()>) {
        ready
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("node in {} did not become ready", self.host));
    }

    /// Kills the node with SIGKILL if it runs (no clean-up runs) and starts it again on the
    /// same files.
    pub fn restart(&mut self) {
        if self.alive() {
            self.child.kill().unwrap();
            self.child.wait().unwrap();
        }
        let (child, lines, ready) = Self::spawn(&self.host, &self.dir, self.workers);
        self.child = child;
        self.lines = lines;
        self.wait_ready(ready);
    }

    /// Starts `swarmnet run` on the files in `dir`: the child, its stdout lines after `ready`,
    /// and a channel that fires on `ready`.
    fn spawn(
        host: &str,
        dir: &Path,
        workers: u16,
    ) -> (Child, mpsc::Receiver<String>, mpsc::Receiver<()>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_swarmnet"))
            .args([
                "run",
                "--netns",
                host,
                "--workers",
                &workers.to_string(),
                "--topology",
            ])
            .arg(dir.join("topology.toml"))
            .arg("--counters")
            .arg(dir.join("counters.json"))
            .arg("--esp-sequence-file")
            .arg(dir.join("esp-sequence.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start swarmnet run");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if ready {
                    let _ = line_tx.send(line);
                } else if line == "ready" {
                    ready = true;
                    let _ = tx.send(());
                }
            }
        });
        (child, lines, rx)
    }

    /// Rewrites the node's topology and sends SIGHUP; returns the line the node answers with.
    pub fn reload(&self, topology: &str) -> String {
        std::fs::write(self.dir.join("topology.toml"), topology).unwrap();
        // SAFETY: kill(2) on the pid of our own running child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the node answers a reload")
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Reads the node's counters file once it satisfies `pred` (the node rewrites it every
    /// second), or panics after `timeout`.
    pub fn counters_when(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(bytes) = std::fs::read(&self.counters) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    if pred(&v) {
                        return v;
                    }
                    if Instant::now() > deadline {
                        panic!("counters never matched; last: {v:#}");
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no counters at {}",
                self.counters.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if self.alive() {
            self.stop();
        }
        for ns in &self.task_netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` on a thread inside namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    netns::run_in(ns, f).expect("enter namespace")
}

/// Like `in_ns` but does not wait: returns the thread's handle.
pub fn spawn_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let file = std::fs::File::open(netns::path(ns)).expect("open namespace");
    std::thread::spawn(move || {
        netns::enter(&file).expect("setns");
        f()
    })
}

/// Sends ICMP echo requests to `dst` from inside `ns` until one is answered (each attempt
/// waits up to a second), at most `attempts` times. Returns the round-trip time.
pub fn ping(ns: &str, dst: Ipv4Addr, attempts: u16) -> Option<Duration> {
    in_ns(ns, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        // A raw ICMP socket, used through std's datagram calls (send_to/recv_from).
        let sock: UdpSocket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
            .expect("raw ICMP socket")
            .into();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let id = (std::process::id() & 0xffff) as u16;
        for seq in 0..attempts {
            let mut pkt = vec![8u8, 0, 0, 0];
            pkt.extend_from_slice(&id.to_be_bytes());
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(b"swarmnet-live-ping");
            let sum = swarmnet::wire::checksum::checksum(&pkt);
            pkt[2..4].copy_from_slice(&sum.to_be_bytes());
            let start = Instant::now();
            sock.send_to(&pkt, SocketAddrV4::new(dst, 0))
                .expect("send echo");
            while start.elapsed() < Duration::from_secs(1) {
                let mut buf = [0u8; 1500];
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let bytes = &buf[..n];
                if n < 20 {
                    continue;
                }
                let ihl = usize::from(bytes[0] & 0x0f) * 4;
                let icmp = &bytes[ihl..];
                let src = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
                if src == dst
                    && icmp.len() >= 8
                    && icmp[0] == 0
                    && icmp[4..6] == id.to_be_bytes()
                    && icmp[6..8] == seq.to_be_bytes()
                {
                    return Some(start.elapsed());
                }
            }
        }
        None
    })
}

/// Deterministic bytes: a xorshift stream.
pub fn pattern(seed: u64, buf: &mut [u8], state: &mut u64) {
    if *state == 0 {
        *state = seed | 1;
    }
    for chunk in buf.chunks_mut(8) {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// Sends `bytes` bytes over TCP from a thread in `client_ns` to `server`:`port` served by a
/// thread in `server_ns`; returns (sha256 sent, sha256 received, elapsed).
pub fn tcp_transfer(
    client_ns: &str,
    server_ns: &str,
    server: Ipv4Addr,
    port: u16,
    bytes: usize,
) -> ([u8; 32], [u8; 32], Duration) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let srv = spawn_in_ns(server_ns, move || {
        let l = TcpListener::bind(SocketAddrV4::new(server, port)).expect("listen");
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n;
            h.update(&buf[..n]);
        }
        (h.finalize().into(), total)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server listening");
    let start = Instant::now();
    let sent: [u8; 32] = in_ns(client_ns, move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddrV4::new(server, port).into(),
            Duration::from_secs(10),
        )
        .expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut state = 0u64;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            pattern(0x5eed, &mut buf[..n], &mut state);
            s.write_all(&buf[..n]).expect("write");
            h.update(&buf[..n]);
            left -= n;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        h.finalize().into()
    });
    let (received, total): ([u8; 32], usize) = srv.join().expect("server thread");
    assert_eq!(total, bytes, "bytes received");
    (sent, received, start.elapsed())
}

/// Sends `count` UDP datagrams of the given sizes from `client_ns` to `server`:`port`; returns
/// the payloads the server in `server_ns` received, in order, within `wait` of the last one.
pub fn udp_exchange(
    client_ns: &str,
    server_ns: &str,
    server: Ipv4Addr,
    port: u16,
    sizes: Vec<usize>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let n = sizes.len();
    let srv = spawn_in_ns(server_ns, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(server, port)).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.len() < n {
            match s.recv(&mut buf) {
                Ok(k) => got.push(buf[..k].to_vec()),
                Err(_) => break,
            }
        }
        got
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server bound");
    let sent = in_ns(client_ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        let mut out = Vec::new();
        let mut state = 0u64;
        for size in sizes {
            let mut p = vec![0u8; size];
            pattern(0xdd, &mut p, &mut state);
            s.send_to(&p, SocketAddrV4::new(server, port))
                .expect("send");
            out.push(p);
        }
        out
    });
    (sent, srv.join().expect("server thread"))
}

/// Turns TX checksum offload of interface `name` (in the calling thread's namespace) on or off,
/// as `ethtool -K NAME tx on|off` does, without needing ethtool installed.
pub fn set_tx_checksum_offload(name: &str, on: bool) {
    use std::os::fd::AsRawFd;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_STXCSUM: u32 = 0x17;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    let mut req = IfReq {
        name: [0; 16],
        data: &mut value,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let sock = UdpSocket::bind("0.0.0.0:0").expect("socket for ioctl");
    // SAFETY: SIOCETHTOOL reads an ifreq whose data points at an ethtool_value; both live
    // across the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReq) };
    assert!(
        rc == 0,
        "ethtool tx {on} on {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// What crossed a host's underlay while a `Sniffer` ran.
#[derive(Debug, Default, Clone, Copy)]
pub struct WireCounts {
    pub vxlan: u64,
    pub esp_ip: u64,
    pub esp_udp: u64,
    /// Bytes of ESP (either form). With UDP GSO a frame seen here may carry many datagrams.
    pub esp_bytes: u64,
    /// Lowest and highest UDP source port of the VXLAN seen (`None` before the first).
    pub vxlan_src_ports: Option<(u16, u16)>,
    /// VXLAN with the remote checksum offload flag set.
    pub vxlan_rco: u64,
}

/// Counts the VXLAN (UDP 4789), ESP (IP protocol 50) and ESP-in-UDP (UDP 4500) frames seen in
/// a namespace, both directions, until stopped.
pub struct Sniffer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<WireCounts>,
}

impl Sniffer {
    pub fn start(ns: &str) -> Sniffer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = spawn_in_ns(ns, move || {
            use socket2::{Domain, Protocol, Socket, Type};
            // ETH_P_ALL in network byte order.
            let sock: UdpSocket =
                Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0x0300)))
                    .expect("packet socket")
                    .into();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            // A deep queue (beyond rmem_max: SO_RCVBUFFORCE, root only), so that a burst on a
            // busy machine is not lost before this thread reads it.
            {
                use std::os::fd::AsRawFd;
                let size: libc::c_int = 32 << 20;
                // SAFETY: setsockopt on our own socket with a valid int and its size.
                unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVBUFFORCE,
                        (&size as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
            }
            ready_tx.send(()).unwrap();
            let mut c = WireCounts::default();
            let mut buf = vec![0u8; 65536];
            loop {
                // Once told to stop, read what the socket still holds, then end at the first
                // empty wait: a busy machine may have left the thread behind the traffic.
                let stopping = flag.load(Ordering::Relaxed);
                let Ok(n) = sock.recv(&mut buf) else {
                    if stopping {
                        break;
                    }
                    continue;
                };
                let f = &buf[..n];
                if n < 34 || f[12..14] != [0x08, 0x00] {
                    continue;
                }
                let ihl = usize::from(f[14] & 0x0f) * 4;
                let port_at = |at: usize| {
                    f.get(14 + ihl + at..14 + ihl + at + 2)
                        .map(|p| u16::from_be_bytes([p[0], p[1]]))
                };
                let dport = port_at(2);
                match (f[23], dport) {
                    (50, _) => {
                        c.esp_ip += 1;
                        c.esp_bytes += n as u64;
                    }
                    (17, Some(4789)) => {
                        c.vxlan += 1;
                        let sport = port_at(0).unwrap_or(0);
                        let (lo, hi) = c.vxlan_src_ports.unwrap_or((sport, sport));
                        c.vxlan_src_ports = Some((lo.min(sport), hi.max(sport)));
                        // The VXLAN header's second byte: RCO is 0x20.
                        if f.get(14 + ihl + 8 + 1).is_some_and(|b| b & 0x20 != 0) {
                            c.vxlan_rco += 1;
                        }
                    }
                    (17, Some(4500)) => {
                        c.esp_udp += 1;
                        c.esp_bytes += n as u64;
                    }
                    _ => {}
                }
            }
            c
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("sniffer ready");
        Sniffer { stop, handle }
    }

    pub fn stop(self) -> WireCounts {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().expect("sniffer thread")
    }
}

/// A TCP stream from a thread in one namespace to a thread in another that runs until
/// `finish`, for changes made while traffic flows.
pub struct Stream {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    client: std::thread::JoinHandle<([u8; 32], u64, libc::tcp_info)>,
    server: std::thread::JoinHandle<([u8; 32], u64)>,
}

/// What a `Stream` carried.
pub struct StreamResult {
    pub sent: [u8; 32],
    pub received: [u8; 32],
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Segments the sender retransmitted, and all it sent (TCP_INFO).
    pub retransmitted: u32,
    pub segments: u32,
}

/// Starts a `Stream` from `client_ns` to `server`:`port` served in `server_ns`.
pub fn tcp_stream(client_ns: &str, server_ns: &str, server: Ipv4Addr, port: u16) -> Stream {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let (ready_tx, ready_rx) = mpsc::channel();
    let srv = spawn_in_ns(server_ns, move || {
        let l = TcpListener::bind(SocketAddrV4::new(server, port)).expect("listen");
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
        (h.finalize().into(), total)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server listening");
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let (stop2, progress2) = (Arc::clone(&stop), Arc::clone(&progress));
    let client = spawn_in_ns(client_ns, move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddrV4::new(server, port).into(),
            Duration::from_secs(10),
        )
        .expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut state = 0u64;
        let mut total = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            pattern(0x5eed, &mut buf, &mut state);
            s.write_all(&buf).expect("write");
            h.update(&buf);
            total += buf.len() as u64;
            progress2.store(total, Ordering::Relaxed);
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let info = tcp_info(&s);
        (h.finalize().into(), total, info)
    });
    Stream {
        stop,
        progress,
        client,
        server: srv,
    }
}

impl Stream {
    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.progress.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until at least `more` bytes beyond now have been written, or panics at `timeout`.
    pub fn advance(&self, more: u64, timeout: Duration) {
        let target = self.bytes() + more;
        let deadline = Instant::now() + timeout;
        while self.bytes() < target {
            assert!(
                Instant::now() < deadline,
                "the stream stalled at {} bytes",
                self.bytes()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn finish(self) -> StreamResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (sent, bytes_sent, info) = self.client.join().expect("client thread");
        let (received, bytes_received) = self.server.join().expect("server thread");
        StreamResult {
            sent,
            received,
            bytes_sent,
            bytes_received,
            retransmitted: info.tcpi_total_retrans,
            segments: info.tcpi_segs_out,
        }
    }
}

/// The kernel's TCP_INFO of a connected socket.
pub fn tcp_info(s: &TcpStream) -> libc::tcp_info {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the buffer and its length are valid for the call.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info
}

/// Sends UDP datagrams of the given sizes from `ns` to an echo server at `server`:`port` one at
/// a time, each retried up to 5 times; returns what was sent and what came back.
pub fn udp_exchange_echo(
    ns: &str,
    server: Ipv4Addr,
    port: u16,
    sizes: Vec<usize>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    in_ns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        let mut state = 0u64;
        let mut buf = vec![0u8; 65536];
        for size in sizes {
            let mut p = vec![0u8; size];
            pattern(0xec, &mut p, &mut state);
            for _ in 0..5 {
                s.send_to(&p, SocketAddrV4::new(server, port))
                    .expect("send");
                if let Ok(n) = s.recv(&mut buf) {
                    got.push(buf[..n].to_vec());
                    break;
                }
            }
            sent.push(p);
        }
        (sent, got)
    })
}
