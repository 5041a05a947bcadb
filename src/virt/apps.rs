//! The built-in apps of virtual tasks: `whoami` (HTTP on 80, like traefik/whoami), `echo`
//! (TCP and UDP on 7), `fetch` (an HTTP client that fetches one URL every second and reports
//! the outcome, so two virtual tasks can carry traffic with no process in between) and `lookup`
//! (asks the task's resolver for names every second and reports the answers as they change).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::IpAddress;

use super::Identity;
use crate::dataplane::Nanos;
use crate::topology::{App, FetchHost, FetchTarget};

/// Concurrent HTTP connections a `whoami` task serves (one listening socket each; a socket
/// listens again once its last connection is closed).
const WHOAMI_CONNS: usize = 8;
/// Bytes of one TCP socket's receive and send buffers, by app. Together they bound a task's
/// memory: a whoami task holds about 8 x (8 + 64) KiB.
const HTTP_RX: usize = 8 * 1024;
const HTTP_TX: usize = 64 * 1024;
const ECHO_BUF: usize = 16 * 1024;
const FETCH_RX: usize = 64 * 1024;
const FETCH_TX: usize = 2 * 1024;
/// Largest request head whoami reads before answering 431.
const MAX_REQUEST: usize = HTTP_RX;
/// Largest body `/data?size=N` sends.
pub const MAX_DATA: u64 = 1 << 30;
/// Time between two fetches, and the most a fetch may take.
const FETCH_EVERY: Nanos = 1_000_000_000;
const FETCH_TIMEOUT: Nanos = 20_000_000_000;

/// Byte `i` of a `/data` body: a fixed pattern anyone can recompute to check a transfer.
pub fn data_byte(i: u64) -> u8 {
    (i % 251) as u8
}

fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    );
    s.set_nagle_enabled(false);
    s
}

pub(super) enum AppState {
    /// No app: the stack only answers ARP and pings (an ingress sandbox run without the mesh).
    Idle,
    Whoami(Whoami),
    Echo(Echo),
    Fetch(Box<Fetch>),
    Lookup(Box<Lookup>),
}

impl AppState {
    pub fn new(app: &App, who: Identity, sockets: &mut SocketSet<'static>, seed: u64) -> AppState {
        if matches!(who.reach, super::Reach::Outside(_)) && !matches!(app, App::Fetch(_)) {
            // A way out serves nothing: only a fetch goes out through it.
            return AppState::Idle;
        }
        match app {
            App::Whoami => AppState::Whoami(Whoami {
                who,
                conns: (0..WHOAMI_CONNS)
                    .map(|_| HttpConn {
                        handle: sockets.add(tcp_socket(HTTP_RX, HTTP_TX)),
                        request: Vec::new(),
                        response: Response::None,
                        proxied: None,
                    })
                    .collect(),
            }),
            App::Echo => {
                let udp = udp::Socket::new(
                    udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16384]),
                    udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16384]),
                );
                AppState::Echo(Echo {
                    tcp: sockets.add(tcp_socket(ECHO_BUF, ECHO_BUF)),
                    udp: sockets.add(udp),
                    buf: vec![0; 2048],
                })
            }
            App::IngressSandbox => AppState::Idle,
            App::Fetch(target) => AppState::Fetch(Box::new(Fetch {
                target: target.clone(),
                socket: sockets.add(tcp_socket(FETCH_RX, FETCH_TX)),
                dns: sockets.add(dns_socket()),
                resolver: who.gateway,
                reach: who.reach.clone(),
                state: FetchState::Idle { next_at: 0 },
                local_port: 49152 + (seed % 16384) as u16,
                query_id: seed as u16,
            })),
            App::Lookup(names) => AppState::Lookup(Box::new(Lookup {
                names: names.clone(),
                dns: sockets.add(dns_socket()),
                resolver: who.gateway,
                at: 0,
                sent: None,
                round_at: 0,
                next_at: 0,
                query_id: seed as u16,
                last: vec![None; names.len()],
            })),
        }
    }

    /// Serves what the sockets hold; true when anything was read or written.
    pub fn step(
        &mut self,
        now: Nanos,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        events: &mut Vec<String>,
    ) -> bool {
        match self {
            AppState::Whoami(w) => w.step(sockets),
            AppState::Echo(e) => e.step(sockets),
            AppState::Fetch(f) => f.step(now, iface, sockets, events),
            AppState::Lookup(l) => l.step(now, sockets, events),
            AppState::Idle => false,
        }
    }

    /// The app's own next deadline (the stack's are apart).
    pub fn next_timer(&self) -> Option<Nanos> {
        match self {
            AppState::Fetch(f) => match f.state {
                FetchState::Idle { next_at } => Some(next_at),
                FetchState::Resolving { started } => Some(started + RESOLVE_TIMEOUT),
                FetchState::Busy { started, .. } => Some(started + FETCH_TIMEOUT),
            },
            AppState::Lookup(l) => Some(match l.sent {
                Some(at) => at + RESOLVE_TIMEOUT,
                None => l.next_at,
            }),
            _ => None,
        }
    }
}

pub(super) struct Whoami {
    who: Identity,
    conns: Vec<HttpConn>,
}

struct HttpConn {
    handle: SocketHandle,
    request: Vec<u8>,
    response: Response,
    /// `None` until the start of the stream told whether a PROXY v2 header comes first; then
    /// the client it names, if any.
    proxied: Option<Option<std::net::SocketAddrV4>>,
}

pub(super) enum Response {
    None,
    /// Head (and a small body) to send from `at`, then `body_left` bytes of the data pattern.
    Sending {
        head: Vec<u8>,
        at: usize,
        body_sent: u64,
        body_left: u64,
    },
    Done,
}

impl Response {
    /// The head (and small body) of a response being sent.
    #[cfg(test)]
    pub fn head(&self) -> &[u8] {
        match self {
            Response::Sending { head, .. } => head,
            _ => &[],
        }
    }
}

impl Whoami {
    fn step(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let mut acted = false;
        for c in &mut self.conns {
            let s = sockets.get_mut::<tcp::Socket>(c.handle);
            if !s.is_open() {
                c.request.clear();
                c.response = Response::None;
                c.proxied = None;
                // Listening on a closed socket cannot fail (port 80 is not 0).
                let _ = s.listen(80);
                continue;
            }
            if matches!(c.response, Response::None) && s.can_recv() {
                let room = MAX_REQUEST - c.request.len();
                let _ = s.recv(|buf| {
                    let n = buf.len().min(room);
                    c.request.extend_from_slice(&buf[..n]);
                    (n, ())
                });
                acted = true;
                if c.proxied.is_none() {
                    match super::proxy::parse(&c.request) {
                        super::proxy::Parsed::Absent => c.proxied = Some(None),
                        super::proxy::Parsed::Header { len, addrs } => {
                            c.request.drain(..len);
                            c.proxied = Some(addrs.map(|(src, _)| src));
                        }
                        super::proxy::Parsed::Incomplete => {}
                        super::proxy::Parsed::Invalid => {
                            c.response = Response::Sending {
                                head: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                                at: 0,
                                body_sent: 0,
                                body_left: 0,
                            };
                        }
                    }
                }
                // The head ends once any PROXY header is taken off (and no error answered).
                let head_end = match (&c.proxied, &c.response) {
                    (Some(_), Response::None) => find(&c.request, b"\r\n\r\n"),
                    _ => None,
                };
                let refused = !matches!(c.response, Response::None);
                if let Some(end) = head_end {
                    let peer = s.remote_endpoint();
                    let mut peer = peer.map_or_else(|| "-".to_string(), |e| e.to_string());
                    if let Some(Some(client)) = c.proxied {
                        // The connection comes from the routing mesh; the header names who
                        // connected to it.
                        peer = format!("{client}\nProxiedBy: {peer}");
                    }
                    c.response = respond(&self.who, &peer, &c.request[..end]);
                } else if !refused && c.request.len() >= MAX_REQUEST {
                    c.response = Response::Sending {
                        head: b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                        at: 0,
                        body_sent: 0,
                        body_left: 0,
                    };
                }
            }
            if let Response::Sending {
                head,
                at,
                body_sent,
                body_left,
            } = &mut c.response
            {
                while s.can_send() && (*at < head.len() || *body_left > 0) {
                    let wrote = s
                        .send(|buf| {
                            let mut n = 0;
                            if *at < head.len() {
                                n = buf.len().min(head.len() - *at);
                                buf[..n].copy_from_slice(&head[*at..*at + n]);
                                *at += n;
                            }
                            let body = (buf.len() - n).min(*body_left as usize);
                            for (i, b) in buf[n..n + body].iter_mut().enumerate() {
                                *b = data_byte(*body_sent + i as u64);
                            }
                            *body_sent += body as u64;
                            *body_left -= body as u64;
                            (n + body, n + body)
                        })
                        .unwrap_or(0);
                    if wrote == 0 {
                        break;
                    }
                    acted = true;
                }
                if *at >= head.len() && *body_left == 0 {
                    // FIN after the data: the response ends with the connection.
                    s.close();
                    c.response = Response::Done;
                }
            } else if s.state() == tcp::State::CloseWait && matches!(c.response, Response::None) {
                // The client closed before a whole request.
                s.close();
            }
        }
        acted
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The answer to one request head (request line and headers, without the blank line).
pub(super) fn respond(who: &Identity, peer: &str, head: &[u8]) -> Response {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let status = |code: &str, body: String| {
        Response::Sending {
        head: format!(
            "HTTP/1.1 {code}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        at: 0,
        body_sent: 0,
        body_left: 0,
    }
    };
    if method != "GET" && method != "HEAD" {
        return status("405 Method Not Allowed", "only GET and HEAD\n".into());
    }
    match path {
        "/data" => {
            let size = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("size="))
                .and_then(|v| v.parse::<u64>().ok());
            match size {
                Some(n) if n <= MAX_DATA => Response::Sending {
                    head: format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                    )
                    .into_bytes(),
                    at: 0,
                    body_sent: 0,
                    body_left: if method == "HEAD" { 0 } else { n },
                },
                _ => status(
                    "400 Bad Request",
                    format!("/data needs ?size=N with N at most {MAX_DATA}\n"),
                ),
            }
        }
        "/" | "" => {
            let mut body = String::new();
            let _ = writeln!(body, "Hostname: {}", who.name);
            let _ = writeln!(body, "Node: {}", who.node);
            let _ = writeln!(body, "IP: {}", who.ip);
            let _ = writeln!(body, "RemoteAddr: {peer}");
            let _ = writeln!(body, "{request_line}");
            for l in lines {
                let _ = writeln!(body, "{l}");
            }
            status("200 OK", body)
        }
        _ => status(
            "404 Not Found",
            format!("no page {path}; try / or /data?size=N\n"),
        ),
    }
}

pub(super) struct Echo {
    tcp: SocketHandle,
    udp: SocketHandle,
    buf: Vec<u8>,
}

impl Echo {
    fn step(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let mut acted = false;
        let s = sockets.get_mut::<tcp::Socket>(self.tcp);
        if !s.is_open() {
            let _ = s.listen(7);
        } else {
            while s.can_recv() && s.can_send() {
                let room = s.send_capacity() - s.send_queue();
                let n = match s.recv_slice(&mut self.buf[..room.min(2048)]) {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                let _ = s.send_slice(&self.buf[..n]);
                acted = true;
            }
            if s.state() == tcp::State::CloseWait && s.send_queue() == 0 {
                s.close();
            }
        }
        let u = sockets.get_mut::<udp::Socket>(self.udp);
        if !u.is_open() {
            let _ = u.bind(7);
        }
        while let Ok((n, meta)) = u.recv_slice(&mut self.buf) {
            // A full send buffer drops the echo, as a busy host would.
            let _ = u.send_slice(&self.buf[..n], meta.endpoint);
            acted = true;
        }
        acted
    }
}

pub(super) struct Fetch {
    target: FetchTarget,
    socket: SocketHandle,
    /// For looking the host up when it is a name.
    dns: SocketHandle,
    resolver: Ipv4Addr,
    /// The addresses this interface fetches from (a task with a way out fetches each address
    /// through one interface).
    reach: super::Reach,
    state: FetchState,
    local_port: u16,
    query_id: u16,
}

/// Most a lookup may take before the fetch reports it failed.
const RESOLVE_TIMEOUT: Nanos = 5_000_000_000;
/// The fetch app's DNS client port.
const DNS_CLIENT_PORT: u16 = 5353;

enum FetchState {
    Idle {
        next_at: Nanos,
    },
    /// The host is a name: its A query is out.
    Resolving {
        started: Nanos,
    },
    Busy {
        /// The address the host name gave, to say in the report.
        resolved: Option<Ipv4Addr>,
        started: Nanos,
        sent: bool,
        head: Vec<u8>,
        status: Option<String>,
        body: u64,
        hash: Sha256,
        /// The `Hostname:` a whoami answer names (which task answered).
        who: Option<String>,
    },
}

/// The value of a `Hostname: ` line in `body`, if one is there whole.
fn hostname_in(body: &[u8]) -> Option<String> {
    let at = find(body, b"Hostname: ")? + b"Hostname: ".len();
    let end = at + body[at..].iter().position(|b| *b == b'\r' || *b == b'\n')?;
    Some(String::from_utf8_lossy(&body[at..end]).into_owned())
}

impl Fetch {
    fn step(
        &mut self,
        now: Nanos,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        events: &mut Vec<String>,
    ) -> bool {
        let s = sockets.get_mut::<tcp::Socket>(self.socket);
        let url = self.target.to_string();
        match &mut self.state {
            FetchState::Idle { next_at } => {
                if now < *next_at || s.is_open() {
                    return false;
                }
                match &self.target.host {
                    FetchHost::Ip(addr) => {
                        let addr = *addr;
                        self.connect(now, addr, None, iface, sockets, events)
                    }
                    FetchHost::Name(name) => {
                        let name = name.clone();
                        self.query(now, &name, sockets, events)
                    }
                }
            }
            FetchState::Resolving { started } => {
                let started = *started;
                let dns = sockets.get_mut::<udp::Socket>(self.dns);
                let mut found = None;
                while let Ok((data, _)) = dns.recv() {
                    if let Some(r) = read_a_answers(data, self.query_id) {
                        found = Some(r.and_then(|all| {
                            all.first().copied().ok_or_else(|| "no address".to_string())
                        }));
                        break;
                    }
                }
                let name = self.target.host.to_string();
                // The way out leaves a failed lookup to the task's other interfaces to report.
                let quiet = matches!(self.reach, super::Reach::Outside(_));
                match found {
                    Some(Ok(addr)) => self.connect(now, addr, Some(addr), iface, sockets, events),
                    Some(Err(_)) if quiet => {
                        self.state = FetchState::Idle {
                            next_at: started + FETCH_EVERY,
                        };
                        true
                    }
                    None if quiet && now >= started + RESOLVE_TIMEOUT => {
                        self.state = FetchState::Idle {
                            next_at: now + FETCH_EVERY,
                        };
                        true
                    }
                    Some(Err(why)) => {
                        events.push(format!("GET {url}: cannot resolve {name}: {why}"));
                        self.state = FetchState::Idle {
                            next_at: started + FETCH_EVERY,
                        };
                        true
                    }
                    None if now >= started + RESOLVE_TIMEOUT => {
                        events.push(format!("GET {url}: cannot resolve {name}: no answer"));
                        self.state = FetchState::Idle {
                            next_at: now + FETCH_EVERY,
                        };
                        true
                    }
                    None => false,
                }
            }
            FetchState::Busy {
                resolved,
                started,
                sent,
                head,
                status,
                body,
                hash,
                who,
            } => {
                let mut acted = false;
                if !*sent && s.may_send() {
                    let req = format!(
                        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: swarmnet-fetch\r\nConnection: close\r\n\r\n",
                        self.target.path, self.target.host
                    );
                    if s.send_slice(req.as_bytes()).is_ok() {
                        *sent = true;
                        acted = true;
                    }
                }
                while s.can_recv() {
                    let got = s.recv(|buf| {
                        let mut used = 0;
                        if status.is_none() {
                            let take = buf.len().min(16 * 1024 - head.len().min(16 * 1024));
                            head.extend_from_slice(&buf[..take]);
                            used = take;
                            if let Some(end) = find(head, b"\r\n\r\n") {
                                let line = String::from_utf8_lossy(&head[..end]);
                                let first = line.split("\r\n").next().unwrap_or("");
                                *status = Some(first.split(' ').nth(1).unwrap_or("?").to_string());
                                let rest = &head[end + 4..];
                                *who = hostname_in(rest);
                                hash.update(rest);
                                *body += rest.len() as u64;
                                head.clear();
                            }
                        } else {
                            if who.is_none() && *body < 1024 {
                                *who = hostname_in(&buf[used..]);
                            }
                            hash.update(&buf[used..]);
                            *body += (buf.len() - used) as u64;
                            used = buf.len();
                        }
                        (used, used)
                    });
                    match got {
                        Ok(n) if n > 0 => acted = true,
                        _ => break,
                    }
                }
                let timed_out = now >= *started + FETCH_TIMEOUT;
                let finished = *sent && !s.may_recv() && !s.can_recv();
                if finished || timed_out || !s.is_open() {
                    let outcome = match (&status, finished) {
                        (Some(code), true) => format!(
                            "GET {url}{}: {code}, {body} bytes, sha256 {}{}",
                            resolved.map(|a| format!(" ({a})")).unwrap_or_default(),
                            hex(&std::mem::take(hash).finalize()),
                            who.take()
                                .map(|w| format!(", from {w}"))
                                .unwrap_or_default()
                        ),
                        _ if timed_out => format!("GET {url}: timed out"),
                        _ => format!("GET {url}: connection failed"),
                    };
                    events.push(outcome);
                    if timed_out {
                        s.abort();
                    } else {
                        s.close();
                    }
                    self.state = FetchState::Idle {
                        next_at: now + FETCH_EVERY,
                    };
                    acted = true;
                }
                acted
            }
        }
    }
}

impl Fetch {
    /// Opens the connection of a fetch to `addr` (`resolved`: the name gave it).
    fn connect(
        &mut self,
        now: Nanos,
        addr: Ipv4Addr,
        resolved: Option<Ipv4Addr>,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        events: &mut Vec<String>,
    ) -> bool {
        if !self.reach.takes(addr) {
            // Another of the task's interfaces fetches from there.
            self.state = FetchState::Idle {
                next_at: now + FETCH_EVERY,
            };
            return false;
        }
        let url = self.target.to_string();
        let s = sockets.get_mut::<tcp::Socket>(self.socket);
        // A new port each time: the last connection may linger in TIME-WAIT.
        self.local_port = if self.local_port == u16::MAX {
            49152
        } else {
            self.local_port + 1
        };
        let remote = (IpAddress::Ipv4(addr), self.target.port);
        if let Err(e) = s.connect(iface.context(), remote, self.local_port) {
            events.push(format!("GET {url}: cannot connect: {e}"));
            self.state = FetchState::Idle {
                next_at: now + FETCH_EVERY,
            };
            return false;
        }
        self.state = FetchState::Busy {
            resolved,
            started: now,
            sent: false,
            head: Vec::new(),
            status: None,
            body: 0,
            hash: Sha256::new(),
            who: None,
        };
        true
    }

    /// Sends the A query for `name` to the task's resolver.
    fn query(
        &mut self,
        now: Nanos,
        name: &str,
        sockets: &mut SocketSet<'static>,
        events: &mut Vec<String>,
    ) -> bool {
        let url = self.target.to_string();
        self.query_id = self.query_id.wrapping_add(1);
        let dns = sockets.get_mut::<udp::Socket>(self.dns);
        if !send_a_query(dns, self.resolver, self.query_id, name) {
            events.push(format!("GET {url}: cannot send the DNS query for {name}"));
            self.state = FetchState::Idle {
                next_at: now + FETCH_EVERY,
            };
            return false;
        }
        self.state = FetchState::Resolving { started: now };
        true
    }
}

/// The UDP socket a fetch or lookup app asks its resolver with.
fn dns_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
    )
}

/// Sends query `id` for the A records of `name` to `resolver`:53; false if it could not be
/// built or sent.
fn send_a_query(dns: &mut udp::Socket, resolver: Ipv4Addr, id: u16, name: &str) -> bool {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    if !dns.is_open() {
        let _ = dns.bind(DNS_CLIENT_PORT);
    }
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    Name::from_ascii(name)
        .ok()
        .map(|n| m.add_query(Query::query(n, RecordType::A)))
        .and_then(|m| m.to_vec().ok())
        .is_some_and(|q| dns.send_slice(&q, (IpAddress::Ipv4(resolver), 53)).is_ok())
}

/// The A records of the answer to query `id`, in answer order: `None` if `data` is not that
/// answer, `Err` with the response code when it is not NOERROR.
fn read_a_answers(data: &[u8], id: u16) -> Option<Result<Vec<Ipv4Addr>, String>> {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RData;
    let m = Message::from_vec(data).ok()?;
    if m.id() != id
        || !m
            .header()
            .message_type()
            .eq(&hickory_proto::op::MessageType::Response)
    {
        return None;
    }
    if m.response_code() != ResponseCode::NoError {
        return Some(Err(m.response_code().to_string()));
    }
    Some(Ok(m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()))
}

/// The `lookup` app: one name at a time, each name once a second.
pub(super) struct Lookup {
    names: Vec<String>,
    dns: SocketHandle,
    resolver: Ipv4Addr,
    /// The name being looked up (index into `names`).
    at: usize,
    /// When its query went out; `None` while waiting for `next_at`.
    sent: Option<Nanos>,
    /// When the current round (every name once) began.
    round_at: Nanos,
    next_at: Nanos,
    query_id: u16,
    /// The last answer reported for each name.
    last: Vec<Option<String>>,
}

impl Lookup {
    fn step(
        &mut self,
        now: Nanos,
        sockets: &mut SocketSet<'static>,
        events: &mut Vec<String>,
    ) -> bool {
        let dns = sockets.get_mut::<udp::Socket>(self.dns);
        let Some(sent) = self.sent else {
            if now < self.next_at {
                return false;
            }
            if self.at == 0 {
                self.round_at = now;
            }
            self.query_id = self.query_id.wrapping_add(1);
            if send_a_query(dns, self.resolver, self.query_id, &self.names[self.at]) {
                self.sent = Some(now);
            } else {
                self.report("cannot send the query".into(), now, events);
            }
            return true;
        };
        let mut found = None;
        while let Ok((data, _)) = dns.recv() {
            if let Some(r) = read_a_answers(data, self.query_id) {
                found = Some(r);
                break;
            }
        }
        let answer = match found {
            Some(Ok(mut addrs)) if !addrs.is_empty() => {
                // Sorted: the resolver shuffles, and only a change of the set is news.
                addrs.sort();
                addrs
                    .iter()
                    .map(Ipv4Addr::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            Some(Ok(_)) => "no address".into(),
            Some(Err(code)) => code,
            None if now >= sent + RESOLVE_TIMEOUT => "no answer".into(),
            None => return false,
        };
        self.report(answer, now, events);
        true
    }

    /// Reports `answer` for the current name if it differs from the last one, and moves on.
    fn report(&mut self, answer: String, now: Nanos, events: &mut Vec<String>) {
        let name = &self.names[self.at];
        if self.last[self.at].as_deref() != Some(answer.as_str()) {
            events.push(format!("lookup {name}: {answer}"));
            self.last[self.at] = Some(answer);
        }
        self.sent = None;
        self.at += 1;
        if self.at == self.names.len() {
            self.at = 0;
            self.next_at = (self.round_at + FETCH_EVERY).max(now);
        } else {
            self.next_at = now;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::read_a_answers;
    use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
    use hickory_proto::rr::{rdata::A, Name, RData, Record, RecordType};
    use std::net::Ipv4Addr;

    fn answer(id: u16, code: ResponseCode, addrs: &[Ipv4Addr]) -> Vec<u8> {
        let name = Name::from_ascii("tasks.web.").unwrap();
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Response)
            .set_response_code(code)
            .add_query(Query::query(name.clone(), RecordType::A));
        for a in addrs {
            m.add_answer(Record::from_rdata(name.clone(), 600, RData::A(A(*a))));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn a_lookup_reads_every_address_of_its_own_answer_only() {
        let addrs = [Ipv4Addr::new(10, 0, 1, 4), Ipv4Addr::new(10, 0, 1, 3)];
        let data = answer(7, ResponseCode::NoError, &addrs);
        assert_eq!(read_a_answers(&data, 7), Some(Ok(addrs.to_vec())));
        // Another query's answer, or a query itself, is not the answer.
        assert_eq!(read_a_answers(&data, 8), None);
        let mut query = data.clone();
        query[2] &= 0x7f;
        assert_eq!(read_a_answers(&query, 7), None);
        assert_eq!(
            read_a_answers(&answer(7, ResponseCode::NXDomain, &[]), 7),
            Some(Err("Non-Existent Domain".into()))
        );
        assert_eq!(
            read_a_answers(&answer(7, ResponseCode::NoError, &[]), 7),
            Some(Ok(vec![]))
        );
        // Anything cut or mangled is read without a panic.
        for cut in 0..data.len() {
            let _ = read_a_answers(&data[..cut], 7);
        }
        let mut x = 0x9e37_79b9u32;
        for _ in 0..20_000 {
            let mut d = data.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let at = x as usize % d.len();
                d[at] ^= (x >> 24) as u8 | 1;
            }
            let _ = read_a_answers(&d, 7);
        }
    }
}
