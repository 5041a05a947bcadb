//! Forwarding against fake upstream servers on loopback addresses started here; nothing is
//! ever sent to a real resolver.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::Instant;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;

/// How a fake upstream answers over UDP.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `records` A records, NOERROR.
    Answer,
    /// Never answers.
    Silent,
    /// SERVFAIL.
    ServFail,
    /// NXDOMAIN, authoritative or not.
    NxDomain { aa: bool },
    /// TC set, no records (TCP then answers in full).
    Truncated,
    /// An answer with another id first, then the right one.
    WrongIdFirst,
}

struct Fake {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn answer(query: &[u8], records: usize, code: ResponseCode, aa: bool, tc: bool) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(aa)
        .set_truncated(tc)
        .set_response_code(code);
    let question = q.queries()[0].clone();
    for i in 0..records {
        m.add_answer(Record::from_rdata(
            question.name().clone(),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, (i % 250) as u8 + 1))),
        ));
    }
    m.add_query(question);
    m.to_vec().unwrap()
}

/// Starts a fake upstream on `ip` (a loopback address) with UDP in `mode` and a TCP listener
/// on the same port that answers `records` records.
fn fake(ip: [u8; 4], mode: Mode, records: usize) -> Fake {
    let udp = UdpSocket::bind((Ipv4Addr::from(ip), 0)).unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    tcp.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let udp_queries = Arc::new(AtomicUsize::new(0));
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let (s1, q1) = (Arc::clone(&stop), Arc::clone(&udp_queries));
    let udp_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !s1.load(Ordering::Relaxed) {
            let Ok((n, from)) = udp.recv_from(&mut buf) else {
                continue;
            };
            q1.fetch_add(1, Ordering::Relaxed);
            let query = &buf[..n];
            let reply = match mode {
                Mode::Silent => continue,
                Mode::Answer => answer(query, records, ResponseCode::NoError, false, false),
                Mode::ServFail => answer(query, 0, ResponseCode::ServFail, false, false),
                Mode::NxDomain { aa } => answer(query, 0, ResponseCode::NXDomain, aa, false),
                Mode::Truncated => answer(query, 0, ResponseCode::NoError, false, true),
                Mode::WrongIdFirst => {
                    let mut wrong = answer(query, 1, ResponseCode::NoError, false, false);
                    wrong[0] ^= 0xff;
                    udp.send_to(&wrong, from).unwrap();
                    answer(query, records, ResponseCode::NoError, false, false)
                }
            };
            udp.send_to(&reply, from).unwrap();
        }
    });
    let (s2, q2) = (Arc::clone(&stop), Arc::clone(&tcp_queries));
    let tcp_thread = std::thread::spawn(move || {
        use std::io::{Read, Write};
        while !s2.load(Ordering::Relaxed) {
            let Ok((mut conn, _)) = tcp.accept() else {
                // Waiting for the next connection or for stop: a short poll keeps the fake
                // simple and lets it end when the test does.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut len = [0u8; 2];
            if conn.read_exact(&mut len).is_err() {
                continue;
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if conn.read_exact(&mut query).is_err() {
                continue;
            }
            q2.fetch_add(1, Ordering::Relaxed);
            let reply = answer(&query, records, ResponseCode::NoError, false, false);
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            let _ = conn.write_all(&framed);
        }
    });
    Fake {
        addr,
        udp_queries,
        tcp_queries,
        stop,
        threads: vec![udp_thread, tcp_thread],
    }
}

fn config(upstreams: &[&Fake], timeout_ms: u64) -> ResolverConfig {
    ResolverConfig {
        upstreams: upstreams.iter().map(|f| f.addr).collect(),
        timeout: Duration::from_millis(timeout_ms),
        max_in_flight: MAX_IN_FLIGHT,
    }
}

fn query(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// A client whose wake-ups arrive on a channel, so tests wait on a condition, not a sleep.
fn client(f: &Forwarder) -> (ForwardClient, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let c = f.client(move || {
        let _ = tx.lock().unwrap().send(());
    });
    (c, rx)
}

fn wait(c: &ForwardClient, woken: &mpsc::Receiver<()>) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) = c.try_recv() {
            return a;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        woken.recv_timeout(left).expect("an answer within 10 s");
    }
}

const UDP: Transport = Transport::Udp { max: 1472 };

#[test]
fn reads_at_most_three_nameservers_from_resolv_conf() {
    let text = "# host resolvers\nsearch example.com\nnameserver 127.0.0.53 # stub\n\
                options edns0\n nameserver   ::1\nnameserver fe80::1%eth0\nnameserver 10.9.9.9\n\
                nameserver not-an-ip\n";
    assert_eq!(
        nameservers(text),
        vec![
            "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
            "[::1]:53".parse().unwrap(),
            "[fe80::1]:53".parse().unwrap(),
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, text).unwrap();
    let c = ResolverConfig::from_resolv_conf(&path).unwrap();
    assert_eq!(c.upstreams.len(), 3);
    assert_eq!(c.timeout, UPSTREAM_TIMEOUT);
    let err = ResolverConfig::from_resolv_conf(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn answers_come_back_with_their_token() {
    let up = fake([127, 0, 53, 1], Mode::WrongIdFirst, 2);
    let f = Forwarder::start(config(&[&up], 2000)).unwrap();
    let (c, woken) = client(&f);
    let q = query("example.com", 0x4242);
    c.submit(7, &q, UDP).unwrap();
    let a = wait(&c, &woken);
    assert_eq!(a.token, 7);
    let m = Message::from_vec(&a.answer).unwrap();
    assert_eq!(m.id(), 0x4242);
    assert_eq!(
        m.answers().len(),
        2,
        "the answer with the wrong id was ignored"
    );
    assert_eq!(f.stats().answered.load(Ordering::Relaxed), 1);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_silent_upstream_times_out_and_the_next_answers() {
    let silent = fake([127, 0, 53, 2], Mode::Silent, 0);
    let good = fake([127, 0, 53, 3], Mode::Answer, 1);
    let f = Forwarder::start(config(&[&silent, &good], 300)).unwrap();
    let (c, woken) = client(&f);
    c.submit(1, &query("example.com", 1), UDP).unwrap();
    let m = Message::from_vec(&wait(&c, &woken).answer).unwrap();
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers().len(), 1);
    assert_eq!(silent.udp_queries.load(Ordering::Relaxed), 1);
    assert_eq!(f.stats().timeouts.load(Ordering::Relaxed), 1);
}

#[test]
fn servfail_when_no_upstream_answers() {
    let a = fake([127, 0, 53, 4], Mode::Silent, 0);
    let b = fake([127, 0, 53, 5], Mode::Silent, 0);
    let f = Forwarder::start(config(&[&a, &b], 200)).unwrap();
    let (c, woken) = client(&f);
    c.submit(3, &query("example.com", 9), UDP).unwrap();
    let m = Message::from_vec(&wait(&c, &woken).answer).unwrap();
    assert_eq!(m.id(), 9);
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert_eq!(m.queries().len(), 1);
    assert_eq!(f.stats().servfail.load(Ordering::Relaxed), 1);
    assert_eq!(a.udp_queries.load(Ordering::Relaxed), 1);
    assert_eq!(b.udp_queries.load(Ordering::Relaxed), 1);

    // No upstream at all (a resolv.conf without nameserver): SERVFAIL too.
    let f = Forwarder::start(config(&[], 200)).unwrap();
    let (c, woken) = client(&f);
    c.submit(4, &query("example.com", 10), UDP).unwrap();
    let m = Message::from_vec(&wait(&c, &woken).answer).unwrap();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
}

#[test]
fn servfail_and_plain_nxdomain_try_the_next_authoritative_nxdomain_ends() {
    let sf = fake([127, 0, 53, 6], Mode::ServFail, 0);
    let nx = fake([127, 0, 53, 7], Mode::NxDomain { aa: false }, 0);
    let good = fake([127, 0, 53, 8], Mode::Answer, 1);
    let f = Forwarder::start(config(&[&sf, &nx, &good], 2000)).unwrap();
    let (c, woken) = client(&f);
    c.submit(1, &query("example.com", 1), UDP).unwrap();
    let m = Message::from_vec(&wait(&c, &woken).answer).unwrap();
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers().len(), 1);

    let nx_aa = fake([127, 0, 53, 9], Mode::NxDomain { aa: true }, 0);
    let f = Forwarder::start(config(&[&nx_aa, &good], 2000)).unwrap();
    let (c, woken) = client(&f);
    c.submit(2, &query("nowhere.example", 2), UDP).unwrap();
    let m = Message::from_vec(&wait(&c, &woken).answer).unwrap();
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(
        good.udp_queries.load(Ordering::Relaxed),
        1,
        "not asked again"
    );

    // Every upstream failing: the last answer goes back (Docker's behaviour).
    let f = Forwarder::start(config(&[&sf, &nx], 2000)).unwrap();
    let (c, woken) = client(&f);
    c.submit(3, &query("nowhere.example", 3), UDP).unwrap();
    let m = Message::from_vec(&wait(&c, &woken).answer).unwrap();
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let up = fake([127, 0, 53, 10], Mode::Truncated, 60);
    let f = Forwarder::start(config(&[&up], 2000)).unwrap();
    let (c, woken) = client(&f);
    c.submit(1, &query("big.example", 5), Transport::Udp { max: 4096 })
        .unwrap();
    let m = Message::from_vec(&wait(&c, &woken).answer).unwrap();
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 60);
    assert_eq!(up.udp_queries.load(Ordering::Relaxed), 1);
    assert_eq!(up.tcp_queries.load(Ordering::Relaxed), 1);
    assert_eq!(f.stats().tcp_retries.load(Ordering::Relaxed), 1);

    // More than the client can take over UDP: a TC answer, so it comes back over TCP.
    c.submit(2, &query("big.example", 6), Transport::Udp { max: 512 })
        .unwrap();
    let a = wait(&c, &woken);
    assert!(a.answer.len() <= 512);
    let m = Message::from_vec(&a.answer).unwrap();
    assert!(m.truncated());
    assert_eq!(m.id(), 6);

    // And over TCP it gets everything, asked over TCP only.
    c.submit(3, &query("big.example", 7), Transport::Tcp)
        .unwrap();
    let m = Message::from_vec(&wait(&c, &woken).answer).unwrap();
    assert_eq!(m.answers().len(), 60);
    assert_eq!(up.udp_queries.load(Ordering::Relaxed), 2);
    assert_eq!(up.tcp_queries.load(Ordering::Relaxed), 3);
}

#[test]
fn refuses_beyond_the_in_flight_bound_and_stops_promptly() {
    let silent = fake([127, 0, 53, 11], Mode::Silent, 0);
    let mut cfg = config(&[&silent], 30_000);
    cfg.max_in_flight = 2;
    let f = Forwarder::start(cfg).unwrap();
    let (c, _woken) = client(&f);
    c.submit(1, &query("a.example", 1), UDP).unwrap();
    c.submit(2, &query("b.example", 2), UDP).unwrap();
    assert_eq!(
        c.submit(3, &query("c.example", 3), UDP),
        Err(SubmitError::Busy)
    );
    assert_eq!(f.stats().refused.load(Ordering::Relaxed), 1);
    assert_eq!(c.in_flight(), 2);
    let mut out = Vec::new();
    assert!(dns::refused(&query("c.example", 3), &mut out));
    assert_eq!(
        Message::from_vec(&out).unwrap().response_code(),
        ResponseCode::Refused
    );
    // Dropping the forwarder abandons the queries instead of waiting out their 30 s.
    let start = Instant::now();
    drop(f);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        c.submit(4, &query("d.example", 4), UDP),
        Err(SubmitError::Stopped)
    );
}
