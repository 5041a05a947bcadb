//! Forwarding of the names the swarm does not own to the host's resolvers, outside the core.
//!
//! One thread runs a small tokio runtime; data-path workers hand it `(token, query bytes)`
//! through a `ForwardClient` without blocking and collect `(token, answer bytes)` later, woken
//! by the callback they gave. Upstreams are tried as Docker's embedded resolver does: in the
//! order of the host's resolv.conf (at most 3), each with a 4 s timeout, the next one on no
//! answer, SERVFAIL, REFUSED or a non-authoritative NXDOMAIN; the query goes over the client's
//! transport, and a UDP answer with TC is asked again over TCP of the same upstream. When no
//! upstream answers the client gets SERVFAIL; beyond `max_in_flight` queries, REFUSED at once.
//! The query bytes are forwarded unchanged (the client's id, flags and EDNS).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Header, MessageType, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::dataplane::dns::{self, Transport};

/// Docker's `maxExtDNS`: upstream servers taken from resolv.conf.
pub const MAX_UPSTREAMS: usize = 3;
/// Docker's `extIOTimeout`: the time one upstream gets to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);
/// Docker's `maxConcurrent`: forwarded queries in flight at once.
pub const MAX_IN_FLIGHT: usize = 1024;
/// The path read when the daemon names none.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Where and how queries are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Upstream servers in the order tried (at most `MAX_UPSTREAMS`).
    pub upstreams: Vec<SocketAddr>,
    pub timeout: Duration,
    pub max_in_flight: usize,
}

/// A resolv.conf that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the host's resolvers from {path}: {source}")]
pub struct ResolvConfError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl ResolverConfig {
    /// The first `MAX_UPSTREAMS` nameservers of the resolv.conf at `path`, Docker's timeout
    /// and in-flight bound. A file with no nameserver gives no upstreams (every forwarded query
    /// is answered SERVFAIL), as glibc would fail too.
    pub fn from_resolv_conf(path: &Path) -> Result<ResolverConfig, ResolvConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResolvConfError {
            path: path.display().to_string(),
            source,
        })?;
        Ok(ResolverConfig {
            upstreams: nameservers(&text),
            timeout: UPSTREAM_TIMEOUT,
            max_in_flight: MAX_IN_FLIGHT,
        })
    }
}

/// The `nameserver` addresses of a resolv.conf text, port 53, at most `MAX_UPSTREAMS`, IPv4
/// and IPv6 (a `%zone` suffix is dropped: its scope cannot be kept across namespaces).
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let addr = words.next()?;
            let addr = addr.split('%').next().unwrap_or(addr);
            addr.parse::<IpAddr>().ok()
        })
        .take(MAX_UPSTREAMS)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// An answer for the query handed in with `token`: send `answer` back to the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub token: u64,
    pub answer: Vec<u8>,
}

/// Why `submit` took no query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// `max_in_flight` queries are waiting already; `dns::refused` builds the answer to send.
    #[error("too many forwarded DNS queries in flight")]
    Busy,
    /// The forwarder has stopped.
    #[error("the DNS forwarder has stopped")]
    Stopped,
}

/// What the forwarder has done, since it started.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Queries taken.
    pub forwarded: AtomicU64,
    /// Queries refused because `max_in_flight` were waiting.
    pub refused: AtomicU64,
    /// Answers from an upstream handed back.
    pub answered: AtomicU64,
    /// Queries no upstream answered: SERVFAIL handed back.
    pub servfail: AtomicU64,
    /// Upstream attempts that got no answer in time (or no connection).
    pub timeouts: AtomicU64,
    /// UDP answers with TC asked again over TCP.
    pub tcp_retries: AtomicU64,
}

struct Shared {
    config: ResolverConfig,
    stopped: AtomicBool,
    in_flight: AtomicUsize,
    stats: ForwardStats,
}

struct Job {
    token: u64,
    query: Vec<u8>,
    transport: Transport,
    reply: mpsc::Sender<Answer>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

/// The forwarding thread. Dropping it stops the thread; queries in flight are abandoned.
pub struct Forwarder {
    jobs: tmpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts the thread that forwards to `config.upstreams`.
    pub fn start(config: ResolverConfig) -> io::Result<Forwarder> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let shared = Arc::new(Shared {
            config,
            stopped: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            stats: ForwardStats::default(),
        });
        let (jobs, mut rx) = tmpsc::unbounded_channel::<Job>();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let run = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("dns-forward".into())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            job = rx.recv() => match job {
                                Some(job) => {
                                    tokio::spawn(serve(Arc::clone(&run), job));
                                }
                                None => break,
                            },
                        }
                    }
                });
            })?;
        Ok(Forwarder {
            jobs,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A handle for one data-path worker: its answers come back to it alone, and `wake` is
    /// called (from the forwarding thread) after each one is queued. `wake` must not block.
    pub fn client(&self, wake: impl Fn() + Send + Sync + 'static) -> ForwardClient {
        let (reply, answers) = mpsc::channel();
        ForwardClient {
            jobs: self.jobs.clone(),
            shared: Arc::clone(&self.shared),
            reply,
            answers,
            wake: Arc::new(wake),
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> &ForwardStats {
        &self.shared.stats
    }

    /// The configuration in use.
    pub fn config(&self) -> &ResolverConfig {
        &self.shared.config
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One worker's side of the forwarder.
pub struct ForwardClient {
    jobs: tmpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
    reply: mpsc::Sender<Answer>,
    answers: mpsc::Receiver<Answer>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl ForwardClient {
    /// Hands `query` over for forwarding; never blocks. Its answer (an upstream's, or
    /// SERVFAIL) comes back from `try_recv` with `token`. `transport` is the client's: a UDP
    /// answer larger than its `max` is cut to a TC answer.
    pub fn submit(
        &self,
        token: u64,
        query: &[u8],
        transport: Transport,
    ) -> Result<(), SubmitError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(SubmitError::Stopped);
        }
        let limit = self.shared.config.max_in_flight;
        let taken = self
            .shared
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        if taken.is_err() {
            self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::Busy);
        }
        let job = Job {
            token,
            query: query.to_vec(),
            transport,
            reply: self.reply.clone(),
            wake: Arc::clone(&self.wake),
        };
        if self.jobs.send(job).is_err() {
            self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::Stopped);
        }
        self.shared.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The next answer ready, if any.
    pub fn try_recv(&self) -> Option<Answer> {
        self.answers.try_recv().ok()
    }

    /// Queries of every client of this forwarder waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }
}

async fn serve(shared: Arc<Shared>, job: Job) {
    let answer = resolve(&shared, &job.query, job.transport).await;
    let mut out = Vec::new();
    let ok = match (&answer, job.transport) {
        (Some(a), Transport::Udp { max }) => dns::fit(a, max, &mut out),
        (Some(a), Transport::Tcp) => {
            out.extend_from_slice(a);
            true
        }
        (None, _) => false,
    };
    if ok {
        shared.stats.answered.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.stats.servfail.fetch_add(1, Ordering::Relaxed);
        dns::servfail(&job.query, &mut out);
    }
    shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    if out.is_empty() {
        return; // not even a query: nothing to answer to
    }
    if job
        .reply
        .send(Answer {
            token: job.token,
            answer: out,
        })
        .is_ok()
    {
        (job.wake)();
    }
}

/// Asks each upstream in turn; the first good answer wins, else the last answer received
/// (a SERVFAIL, REFUSED or NXDOMAIN from every one), else none.
async fn resolve(shared: &Shared, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let expect = Expect::of(query)?;
    let timeout = shared.config.timeout;
    let mut last = None;
    for &server in &shared.config.upstreams {
        let got = match transport {
            Transport::Udp { .. } => exchange_udp(server, query, &expect, timeout).await,
            Transport::Tcp => exchange_tcp(server, query, &expect, timeout).await,
        };
        let Some(mut answer) = got else {
            shared.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(mut header) = read_header(&answer) else {
            continue;
        };
        if header.truncated() && matches!(transport, Transport::Udp { .. }) {
            shared.stats.tcp_retries.fetch_add(1, Ordering::Relaxed);
            // Without a TCP answer the TC answer goes back as it is: the client asks again
            // over TCP itself.
            match exchange_tcp(server, query, &expect, timeout).await {
                Some(full) => {
                    if let Some(h) = read_header(&full) {
                        answer = full;
                        header = h;
                    }
                }
                None => {
                    shared.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        match header.response_code() {
            ResponseCode::NoError => return Some(answer),
            // RFC 8020: an authoritative NXDOMAIN is final.
            ResponseCode::NXDomain if header.authoritative() => return Some(answer),
            _ => last = Some(answer),
        }
    }
    last
}

fn read_header(bytes: &[u8]) -> Option<Header> {
    Header::read(&mut BinDecoder::new(bytes)).ok()
}

/// What an upstream's answer must match to be taken: the query's id and question.
struct Expect {
    id: u16,
    question: Option<Query>,
}

impl Expect {
    fn of(query: &[u8]) -> Option<Expect> {
        let mut decoder = BinDecoder::new(query);
        let header = Header::read(&mut decoder).ok()?;
        let question = if header.query_count() == 1 {
            Query::read(&mut decoder).ok()
        } else {
            None
        };
        Some(Expect {
            id: header.id(),
            question,
        })
    }

    fn matches(&self, answer: &[u8]) -> bool {
        let mut decoder = BinDecoder::new(answer);
        let Ok(header) = Header::read(&mut decoder) else {
            return false;
        };
        if header.id() != self.id || header.message_type() != MessageType::Response {
            return false;
        }
        match &self.question {
            None => true,
            Some(q) => {
                header.query_count() == 1 && Query::read(&mut decoder).ok().as_ref() == Some(q)
            }
        }
    }
}

/// One query over UDP from a fresh ephemeral port (an answer must come from `server`, to
/// that port, with the query's id and question), within `timeout`.
async fn exchange_udp(
    server: SocketAddr,
    query: &[u8],
    expect: &Expect,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let attempt = async {
        let socket = UdpSocket::bind(bind).await.ok()?;
        socket.connect(server).await.ok()?;
        socket.send(query).await.ok()?;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = socket.recv(&mut buf).await.ok()?;
            if expect.matches(&buf[..n]) {
                buf.truncate(n);
                return Some(buf);
            }
            // Anything else (a late answer to someone else, a spoof attempt) is ignored.
        }
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// One query over TCP (RFC 1035 4.2.2 two-byte length framing), within `timeout`.
async fn exchange_tcp(
    server: SocketAddr,
    query: &[u8],
    expect: &Expect,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let len = u16::try_from(query.len()).ok()?;
    let attempt = async {
        let mut stream = TcpStream::connect(server).await.ok()?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await.ok()?;
        loop {
            let n = usize::from(stream.read_u16().await.ok()?);
            let mut buf = vec![0u8; n];
            stream.read_exact(&mut buf).await.ok()?;
            if expect.matches(&buf) {
                return Some(buf);
            }
        }
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

#[cfg(test)]
mod tests;
