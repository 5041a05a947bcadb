//! Answers checked with a second DNS library (simple-dns), not the one that built them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use simple_dns::rdata::RData as SRData;
use simple_dns::{Packet, PacketFlag, RCODE};

use super::*;
use crate::dataplane::services::{Backend, NetServices, Service, ServiceView};

fn backend(task: &str, ip: [u8; 4]) -> Backend {
    Backend {
        task: task.to_string(),
        ip: Ipv4Addr::from(ip),
    }
}

fn svc(name: &str, aliases: &[&str], vip: Option<[u8; 4]>, backends: Vec<Backend>) -> Service {
    Service {
        name: name.to_string(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        vip: vip.map(Ipv4Addr::from),
        backends,
    }
}

/// Network 0: my-net (the querying task's own); 1: ingress; 2: other.
fn view() -> ServiceView {
    ServiceView {
        networks: vec![
            NetServices {
                network: "my-net".into(),
                ingress: false,
                services: vec![
                    svc(
                        "my-web",
                        &["web"],
                        Some([10, 0, 1, 2]),
                        vec![
                            backend("my-web.1.aaa", [10, 0, 1, 3]),
                            backend("my-web.2.bbb", [10, 0, 1, 4]),
                            backend("my-web.3.ccc", [10, 0, 1, 5]),
                        ],
                    ),
                    svc(
                        "db",
                        &[],
                        None,
                        vec![
                            backend("db.1.ddd", [10, 0, 1, 6]),
                            backend("db.2.eee", [10, 0, 1, 7]),
                            backend("db.3.fff", [10, 0, 1, 8]),
                            backend("db.4.ggg", [10, 0, 1, 9]),
                        ],
                    ),
                    svc("idle", &[], None, vec![]),
                    svc("ghost", &[], Some([10, 0, 1, 20]), vec![]),
                ],
            },
            NetServices {
                network: "ingress".into(),
                ingress: true,
                services: vec![svc(
                    "in-only",
                    &[],
                    Some([10, 0, 0, 2]),
                    vec![backend("in-only.1.x", [10, 0, 0, 3])],
                )],
            },
            NetServices {
                network: "other".into(),
                ingress: false,
                services: vec![
                    svc(
                        "my-web",
                        &[],
                        Some([10, 0, 2, 2]),
                        vec![backend("my-web.1.aaa", [10, 0, 2, 3])],
                    ),
                    svc("idle", &[], Some([10, 0, 2, 30]), vec![]),
                    svc(
                        "cache",
                        &[],
                        None,
                        vec![backend("cache.1.hhh", [10, 0, 2, 9])],
                    ),
                ],
            },
        ],
    }
}

const NETS: &[usize] = &[0, 1, 2];
const UDP: Transport = Transport::Udp { max: 1472 };

fn query_msg(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(0x1234).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    query_msg(name, qtype).to_vec().unwrap()
}

fn ask(table: &DnsTable, name: &str, qtype: RecordType) -> (Outcome, Vec<u8>) {
    let mut out = Vec::new();
    let o = table.respond(NETS, &query(name, qtype), UDP, 7, &mut out);
    (o, out)
}

fn a_records(p: &Packet) -> Vec<Ipv4Addr> {
    p.answers
        .iter()
        .map(|rr| {
            assert_eq!(rr.ttl, TTL);
            match &rr.rdata {
                SRData::A(a) => Ipv4Addr::from(a.address),
                other => panic!("not an A record: {other:?}"),
            }
        })
        .collect()
}

/// Answered, NOERROR, flags as Docker sets them; returns the parsed answer.
fn answered(o: Outcome, out: &[u8]) -> Packet<'_> {
    assert_eq!(o, Outcome::Answered);
    let p = Packet::parse(out).expect("simple-dns parses the answer");
    assert_eq!(p.id(), 0x1234);
    assert!(p.has_flags(PacketFlag::RESPONSE));
    assert!(p.has_flags(PacketFlag::RECURSION_DESIRED), "RD echoed");
    assert!(p.has_flags(PacketFlag::RECURSION_AVAILABLE));
    assert!(
        !p.has_flags(PacketFlag::AUTHORITATIVE_ANSWER),
        "Docker sets no AA"
    );
    assert_eq!(p.rcode(), RCODE::NoError);
    assert_eq!(p.questions.len(), 1, "question echoed");
    p
}

fn ips(list: &[[u8; 4]]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|o| Ipv4Addr::from(*o)).collect()
}

#[test]
fn service_name_answers_the_vip() {
    let t = DnsTable::new(&view());
    for name in ["my-web", "my-web.", "MY-Web", "web", "WEB."] {
        let (o, out) = ask(&t, name, RecordType::A);
        let p = answered(o, &out);
        assert_eq!(a_records(&p), vec![Ipv4Addr::new(10, 0, 1, 2)], "{name}");
        // The owner name is the question's, case and all.
        assert_eq!(
            p.answers[0].name.to_string().trim_end_matches('.'),
            name.trim_end_matches('.')
        );
    }
}

#[test]
fn tasks_name_answers_every_running_task() {
    let t = DnsTable::new(&view());
    for name in ["tasks.my-web", "TASKS.web.", "tasks.my-web.my-net"] {
        let (o, out) = ask(&t, name, RecordType::A);
        let got: BTreeSet<_> = a_records(&answered(o, &out)).into_iter().collect();
        assert_eq!(
            got,
            ips(&[[10, 0, 1, 3], [10, 0, 1, 4], [10, 0, 1, 5]]),
            "{name}"
        );
    }
}

#[test]
fn dnsrr_answers_every_task_shuffled_by_entropy() {
    let t = DnsTable::new(&view());
    let q = query("db", RecordType::A);
    let all = ips(&[[10, 0, 1, 6], [10, 0, 1, 7], [10, 0, 1, 8], [10, 0, 1, 9]]);
    let mut orders = BTreeSet::new();
    let mut firsts = BTreeSet::new();
    for entropy in 0..64u64 {
        let mut out = Vec::new();
        let o = t.respond(NETS, &q, UDP, entropy, &mut out);
        let order = a_records(&answered(o, &out));
        assert_eq!(order.len(), 4);
        assert_eq!(order.iter().copied().collect::<BTreeSet<_>>(), all);
        firsts.insert(order[0]);
        orders.insert(order);
    }
    assert!(
        orders.len() > 10,
        "only {} orders in 64 draws",
        orders.len()
    );
    assert_eq!(firsts.len(), 4, "every task comes first sometimes");
    // Same entropy, same order: the core is deterministic.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    t.respond(NETS, &q, UDP, 99, &mut a);
    t.respond(NETS, &q, UDP, 99, &mut b);
    assert_eq!(a, b);
}

#[test]
fn task_name_and_ptr() {
    let t = DnsTable::new(&view());
    let (o, out) = ask(&t, "my-web.2.bbb", RecordType::A);
    assert_eq!(
        a_records(&answered(o, &out)),
        vec![Ipv4Addr::new(10, 0, 1, 4)]
    );

    let (o, out) = ask(&t, "4.1.0.10.in-addr.arpa", RecordType::PTR);
    let p = answered(o, &out);
    assert_eq!(p.answers.len(), 1);
    assert_eq!(p.answers[0].ttl, TTL);
    assert_eq!(p.answers[0].name.to_string(), "4.1.0.10.in-addr.arpa");
    match &p.answers[0].rdata {
        SRData::PTR(ptr) => assert_eq!(ptr.0.to_string(), "my-web.2.bbb.my-net"),
        other => panic!("not a PTR: {other:?}"),
    }
    // A task on the second network: named after that network.
    let (o, out) = ask(&t, "9.2.0.10.IN-ADDR.ARPA.", RecordType::PTR);
    let p = answered(o, &out);
    // The owner keeps the question's spelling (the prebuilt record is lower case).
    assert_eq!(p.answers[0].name.to_string(), "9.2.0.10.IN-ADDR.ARPA");
    assert_eq!(p.answers[0].ttl, TTL);
    match &p.answers[0].rdata {
        SRData::PTR(ptr) => assert_eq!(ptr.0.to_string(), "cache.1.hhh.other"),
        other => panic!("not a PTR: {other:?}"),
    }
    // VIPs have no PTR in Docker: forwarded, like any address the swarm does not name.
    assert_eq!(
        ask(&t, "2.1.0.10.in-addr.arpa", RecordType::PTR).0,
        Outcome::Forward
    );
    assert_eq!(
        ask(&t, "1.1.1.1.in-addr.arpa", RecordType::PTR).0,
        Outcome::Forward
    );
    assert_eq!(
        ask(&t, "01.1.0.10.in-addr.arpa", RecordType::PTR).0,
        Outcome::Forward
    );
}

#[test]
fn known_names_answer_other_types_empty() {
    let t = DnsTable::new(&view());
    for (name, qtype) in [
        ("my-web", RecordType::AAAA),
        ("tasks.db", RecordType::AAAA),
        ("my-web.1.aaa", RecordType::MX),
        ("db", RecordType::TXT),
        ("my-web", RecordType::PTR),
    ] {
        let (o, out) = ask(&t, name, qtype);
        assert!(answered(o, &out).answers.is_empty(), "{name} {qtype}");
    }
    assert_eq!(ask(&t, "example.com", RecordType::AAAA).0, Outcome::Forward);
    assert_eq!(ask(&t, "example.com", RecordType::A).0, Outcome::Forward);
    assert_eq!(
        ask(&t, "my-web.example.com", RecordType::A).0,
        Outcome::Forward
    );
}

#[test]
fn own_network_first_then_the_next() {
    let t = DnsTable::new(&view());
    // From network 2 first, my-web is that network's VIP.
    let mut out = Vec::new();
    let o = t.respond(&[2, 0], &query("my-web", RecordType::A), UDP, 1, &mut out);
    assert_eq!(
        a_records(&answered(o, &out)),
        vec![Ipv4Addr::new(10, 0, 2, 2)]
    );
    // A name only the second network knows falls through to it.
    let (o, out) = ask(&t, "cache", RecordType::A);
    assert_eq!(
        a_records(&answered(o, &out)),
        vec![Ipv4Addr::new(10, 0, 2, 9)]
    );
    // `<name>.<network>` picks the network.
    let (o, out) = ask(&t, "my-web.other", RecordType::A);
    assert_eq!(
        a_records(&answered(o, &out)),
        vec![Ipv4Addr::new(10, 0, 2, 2)]
    );
    // A network the task is not on answers nothing.
    let mut out = Vec::new();
    let o = t.respond(&[0], &query("cache", RecordType::A), UDP, 1, &mut out);
    assert_eq!(o, Outcome::Forward);
    // Out-of-range network indices are ignored, not a panic.
    let o = t.respond(&[9, 0], &query("db", RecordType::A), UDP, 1, &mut out);
    assert_eq!(o, Outcome::Answered);
}

#[test]
fn ingress_has_no_names() {
    let t = DnsTable::new(&view());
    assert_eq!(ask(&t, "in-only", RecordType::A).0, Outcome::Forward);
    assert_eq!(ask(&t, "tasks.in-only", RecordType::A).0, Outcome::Forward);
    assert_eq!(ask(&t, "in-only.1.x", RecordType::A).0, Outcome::Forward);
    assert_eq!(
        ask(&t, "3.0.0.10.in-addr.arpa", RecordType::PTR).0,
        Outcome::Forward
    );
}

#[test]
fn no_running_task_answers_empty_not_forwarded() {
    let t = DnsTable::new(&view());
    // dnsrr service with no task on my-net, but a VIP on `other`: the network with an
    // address answers (the name never resolves to nothing while it has one).
    let (o, out) = ask(&t, "idle", RecordType::A);
    assert_eq!(
        a_records(&answered(o, &out)),
        vec![Ipv4Addr::new(10, 0, 2, 30)]
    );
    let mut out = Vec::new();
    let o = t.respond(&[0], &query("idle", RecordType::A), UDP, 1, &mut out);
    assert!(answered(o, &out).answers.is_empty());
    let (o, out) = ask(&t, "tasks.ghost", RecordType::A);
    assert!(answered(o, &out).answers.is_empty());
    // The VIP of a service with no task still answers: the VIP is the service's, not a task's.
    let (o, out) = ask(&t, "ghost", RecordType::A);
    assert_eq!(
        a_records(&answered(o, &out)),
        vec![Ipv4Addr::new(10, 0, 1, 20)]
    );
}

#[test]
fn a_stopped_task_is_in_no_answer() {
    let mut v = view();
    v.networks[0].services[1].backends.remove(1); // db.2.eee, 10.0.1.7, stopped
    v.networks[0].services[0].backends.remove(0); // my-web.1.aaa, 10.0.1.3, stopped
    let t = DnsTable::new(&v);
    let gone = [Ipv4Addr::new(10, 0, 1, 7), Ipv4Addr::new(10, 0, 1, 3)];
    for entropy in 0..16 {
        for name in ["db", "tasks.db", "tasks.my-web", "tasks.web"] {
            let mut out = Vec::new();
            let o = t.respond(&[0], &query(name, RecordType::A), UDP, entropy, &mut out);
            let got = a_records(&answered(o, &out));
            assert!(!got.is_empty());
            assert!(got.iter().all(|ip| !gone.contains(ip)), "{name}: {got:?}");
        }
    }
    let mut out = Vec::new();
    for name in ["db.2.eee", "my-web.1.aaa"] {
        let o = t.respond(&[0], &query(name, RecordType::A), UDP, 1, &mut out);
        assert_eq!(o, Outcome::Forward, "{name}");
    }
    for ptr in ["7.1.0.10.in-addr.arpa", "3.1.0.10.in-addr.arpa"] {
        let o = t.respond(&[0], &query(ptr, RecordType::PTR), UDP, 1, &mut out);
        assert_eq!(o, Outcome::Forward, "{ptr}");
    }
}

fn big_view(tasks: usize) -> ServiceView {
    ServiceView {
        networks: vec![NetServices {
            network: "big".into(),
            ingress: false,
            services: vec![svc(
                "many",
                &[],
                None,
                (0..tasks)
                    .map(|i| {
                        backend(
                            &format!("many.{i}.t{i}"),
                            [10, 1, (i / 250) as u8, (i % 250) as u8 + 2],
                        )
                    })
                    .collect(),
            )],
        }],
    }
}

#[test]
fn truncates_at_512_bytes_over_udp_with_tc() {
    let t = DnsTable::new(&big_view(100));
    let mut out = Vec::new();
    let q = query("tasks.many", RecordType::A);
    let o = t.respond(&[0], &q, UDP, 3, &mut out);
    assert_eq!(o, Outcome::Answered);
    assert!(out.len() <= 512, "{} bytes", out.len());
    let p = Packet::parse(&out).unwrap();
    assert!(p.has_flags(PacketFlag::TRUNCATION));
    // As many records as fit (Docker trims one at a time): 12 + 16 question + 16 per record.
    assert!(p.answers.len() >= 25, "{} records", p.answers.len());
    assert!(
        512 - out.len() < 16,
        "room for one more record was left: {}",
        out.len()
    );

    // Over TCP every record, no TC.
    let o = t.respond(&[0], &q, Transport::Tcp, 3, &mut out);
    assert_eq!(o, Outcome::Answered);
    let p = Packet::parse(&out).unwrap();
    assert!(!p.has_flags(PacketFlag::TRUNCATION));
    assert_eq!(p.answers.len(), 100);

    // The caller's own limit (a small MTU) applies too.
    let o = t.respond(&[0], &q, Transport::Udp { max: 200 }, 3, &mut out);
    assert_eq!(o, Outcome::Answered);
    assert!(out.len() <= 200);
    assert!(Packet::parse(&out)
        .unwrap()
        .has_flags(PacketFlag::TRUNCATION));
}

#[test]
fn truncates_at_the_edns_size_and_keeps_opt() {
    let t = DnsTable::new(&big_view(100));
    let mut m = query_msg("tasks.many", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(1000);
    m.set_edns(edns);
    let q = m.to_vec().unwrap();
    let mut out = Vec::new();
    assert_eq!(t.respond(&[0], &q, UDP, 3, &mut out), Outcome::Answered);
    assert!(
        out.len() <= 1000 && out.len() > 1000 - 16,
        "{} bytes",
        out.len()
    );
    let p = Packet::parse(&out).unwrap();
    assert!(p.has_flags(PacketFlag::TRUNCATION));
    assert!(p.opt().is_some(), "OPT answered to an EDNS query");

    // A client claiming 65535 gets at most EDNS_UDP_MAX.
    let mut m = query_msg("tasks.many", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(65535);
    m.set_edns(edns);
    let q = m.to_vec().unwrap();
    assert_eq!(
        t.respond(&[0], &q, Transport::Udp { max: 65507 }, 3, &mut out),
        Outcome::Answered
    );
    assert!(out.len() <= usize::from(EDNS_UDP_MAX));
    let p = Packet::parse(&out).unwrap();
    assert!(p.has_flags(PacketFlag::TRUNCATION));
    assert_eq!(p.opt().unwrap().udp_packet_size, EDNS_UDP_MAX);

    // Small enough: whole, no TC, with OPT.
    let t = DnsTable::new(&big_view(40));
    assert_eq!(t.respond(&[0], &q, UDP, 3, &mut out), Outcome::Answered);
    let p = Packet::parse(&out).unwrap();
    assert!(!p.has_flags(PacketFlag::TRUNCATION));
    assert_eq!(p.answers.len(), 40);
    assert!(p.opt().is_some());
}

#[test]
fn formerr_notimp_badvers_and_drops() {
    let t = DnsTable::new(&view());
    let mut out = Vec::new();
    // Too short for a header: nothing to answer to.
    assert_eq!(
        t.respond(NETS, &[0x12; 11], UDP, 0, &mut out),
        Outcome::Drop(DnsDrop::Short)
    );
    assert!(out.is_empty());
    // A response is never answered.
    let mut resp = query("my-web", RecordType::A);
    resp[2] |= 0x80;
    assert_eq!(
        t.respond(NETS, &resp, UDP, 0, &mut out),
        Outcome::Drop(DnsDrop::NotQuery)
    );

    let rcode_of = |out: &[u8]| {
        let p = Packet::parse(out).unwrap();
        assert_eq!(p.id(), 0x1234);
        assert!(p.has_flags(PacketFlag::RESPONSE));
        p.rcode()
    };
    // Header readable, question cut short: FORMERR.
    let q = query("my-web", RecordType::A);
    assert_eq!(
        t.respond(NETS, &q[..q.len() - 3], UDP, 0, &mut out),
        Outcome::Answered
    );
    assert_eq!(rcode_of(&out), RCODE::FormatError);
    // Two questions: FORMERR.
    let mut m = query_msg("my-web", RecordType::A);
    m.add_query(Query::query(Name::from_ascii("db").unwrap(), RecordType::A));
    assert_eq!(
        t.respond(NETS, &m.to_vec().unwrap(), UDP, 0, &mut out),
        Outcome::Answered
    );
    assert_eq!(rcode_of(&out), RCODE::FormatError);
    // No question: FORMERR.
    let mut m = Message::new();
    m.set_id(0x1234);
    assert_eq!(
        t.respond(NETS, &m.to_vec().unwrap(), UDP, 0, &mut out),
        Outcome::Answered
    );
    assert_eq!(rcode_of(&out), RCODE::FormatError);
    // Another opcode: NOTIMP.
    for op in [OpCode::Status, OpCode::Notify, OpCode::Update] {
        let mut m = query_msg("my-web", RecordType::A);
        m.set_op_code(op);
        assert_eq!(
            t.respond(NETS, &m.to_vec().unwrap(), UDP, 0, &mut out),
            Outcome::Answered
        );
        assert_eq!(rcode_of(&out), RCODE::NotImplemented, "{op:?}");
    }
    // EDNS version 1: BADVERS (extended rcode 16, high bits in the OPT record).
    let mut m = query_msg("my-web", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    m.set_edns(edns);
    assert_eq!(
        t.respond(NETS, &m.to_vec().unwrap(), UDP, 0, &mut out),
        Outcome::Answered
    );
    let back = Message::from_vec(&out).unwrap();
    // 16 is both BADVERS and BADSIG in the registry; hickory reads it back as the latter.
    assert_eq!(u16::from(back.response_code()), 16);
    assert!(back.answers().is_empty());
    // Another class: not ours.
    let mut m = Message::new();
    m.set_id(0x1234);
    let mut qq = Query::query(Name::from_ascii("my-web").unwrap(), RecordType::A);
    qq.set_query_class(DNSClass::CH);
    m.add_query(qq);
    assert_eq!(
        t.respond(NETS, &m.to_vec().unwrap(), UDP, 0, &mut out),
        Outcome::Forward
    );
}

#[test]
fn servfail_echoes_the_question() {
    let mut out = Vec::new();
    assert!(servfail(&query("example.com", RecordType::AAAA), &mut out));
    let p = Packet::parse(&out).unwrap();
    assert_eq!(p.id(), 0x1234);
    assert_eq!(p.rcode(), RCODE::ServerFailure);
    assert!(p.has_flags(PacketFlag::RESPONSE | PacketFlag::RECURSION_DESIRED));
    assert_eq!(p.questions.len(), 1);
    assert_eq!(p.questions[0].qname.to_string(), "example.com");
    assert!(p.answers.is_empty());
    assert!(!servfail(&[1, 2, 3], &mut out));
    assert!(out.is_empty());
    // A header and garbage still gets its SERVFAIL, without a question.
    let mut junk = query("example.com", RecordType::A);
    junk.truncate(14);
    assert!(servfail(&junk, &mut out));
    assert_eq!(Packet::parse(&out).unwrap().rcode(), RCODE::ServerFailure);
}

/// A deterministic stream of bytes for the garbage tests (no RNG crate in the core's tests).
fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn garbage_never_panics() {
    let t = DnsTable::new(&view());
    let mut out = Vec::new();
    let mut seed = 0x5eed_u64;
    let seeds = [
        query("my-web", RecordType::A),
        query("tasks.db", RecordType::A),
        query("4.1.0.10.in-addr.arpa", RecordType::PTR),
        query("example.com", RecordType::AAAA),
    ];
    for round in 0..20_000 {
        let base = &seeds[round % seeds.len()];
        let mut msg = base.clone();
        match noise(&mut seed) % 4 {
            // Cut anywhere.
            0 => msg.truncate((noise(&mut seed) as usize) % (base.len() + 1)),
            // Flip a few bytes.
            1 => {
                for _ in 0..1 + noise(&mut seed) % 4 {
                    let i = (noise(&mut seed) as usize) % msg.len();
                    msg[i] = noise(&mut seed) as u8;
                }
            }
            // Pure noise.
            2 => {
                let len = (noise(&mut seed) % 80) as usize;
                msg = (0..len).map(|_| noise(&mut seed) as u8).collect();
            }
            // Trailing junk and compression pointers that loop.
            _ => {
                msg.extend_from_slice(&[0xc0, 0x0c, 0xc0, 0x0c]);
                msg[5] = noise(&mut seed) as u8;
            }
        }
        let transport = if round % 3 == 0 { Transport::Tcp } else { UDP };
        match t.respond(NETS, &msg, transport, round as u64, &mut out) {
            Outcome::Answered => {
                assert!(out.len() >= 12);
                assert_eq!(&out[..2], &msg[..2], "id echoed");
                if transport == UDP {
                    assert!(out.len() <= usize::from(EDNS_UDP_MAX));
                }
            }
            Outcome::Forward | Outcome::Drop(_) => {}
        }
        let _ = servfail(&msg, &mut out);
    }
}

#[test]
fn tshark_decodes_the_answers() {
    let Some(tshark) = crate::dataplane::dns::tests::tshark() else {
        eprintln!("SKIP tshark_decodes_the_answers: tshark not found in PATH");
        return;
    };
    let t = DnsTable::new(&view());
    let mut answers = Vec::new();
    for (name, qtype) in [
        ("tasks.db", RecordType::A),
        ("my-web", RecordType::A),
        ("4.1.0.10.in-addr.arpa", RecordType::PTR),
        ("my-web", RecordType::AAAA),
    ] {
        let mut out = Vec::new();
        assert_eq!(
            t.respond(NETS, &query(name, qtype), UDP, 5, &mut out),
            Outcome::Answered
        );
        answers.push(out);
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("dns.pcap");
    write_udp_pcap(&pcap, &answers);
    let outp = std::process::Command::new(tshark)
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "dns.flags.rcode",
            "-e",
            "dns.count.answers",
            "-e",
            "dns.a",
            "-e",
            "dns.ptr.domain_name",
            "-e",
            "dns.resp.ttl",
            "-e",
            "_ws.expert",
        ])
        .output()
        .unwrap();
    assert!(
        outp.status.success(),
        "{}",
        String::from_utf8_lossy(&outp.stderr)
    );
    let text = String::from_utf8(outp.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split('|').collect()).collect();
    assert_eq!(fields[0][0], "0");
    assert_eq!(fields[0][1], "4");
    let got: BTreeSet<&str> = fields[0][2].split(',').collect();
    assert_eq!(
        got,
        ["10.0.1.6", "10.0.1.7", "10.0.1.8", "10.0.1.9"]
            .into_iter()
            .collect()
    );
    assert_eq!(fields[1][2], "10.0.1.2");
    assert!(fields[1][4].starts_with("600"), "{text}");
    assert_eq!(fields[2][3], "my-web.2.bbb.my-net");
    assert_eq!(fields[3][1], "0");
    assert!(
        fields.iter().all(|f| f[5].is_empty()),
        "tshark flagged something: {text}"
    );
}

pub(super) fn tshark() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join("tshark"))
        .find(|p| p.is_file())
}

/// Wraps each answer in Ethernet/IPv4/UDP from port 53 (etherparse) into a pcap file.
fn write_udp_pcap(path: &std::path::Path, payloads: &[Vec<u8>]) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(file).unwrap();
    for (i, p) in payloads.iter().enumerate() {
        let b =
            etherparse::PacketBuilder::ethernet2([2, 0x42, 10, 0, 0, 1], [2, 0x42, 10, 0, 1, 9])
                .ipv4([10, 0, 1, 250], [10, 0, 1, 9], 64)
                .udp(53, 40000 + i as u16);
        let mut frame = Vec::new();
        b.write(&mut frame, p).unwrap();
        w.write_packet(&PcapPacket::new(
            std::time::Duration::from_secs(i as u64),
            frame.len() as u32,
            &frame,
        ))
        .unwrap();
    }
}

#[test]
fn fit_cuts_a_large_upstream_answer_to_tc() {
    // An "upstream" answer: our own TCP answer with 100 records.
    let t = DnsTable::new(&big_view(100));
    let mut full = Vec::new();
    let q = query("tasks.many", RecordType::A);
    assert_eq!(
        t.respond(&[0], &q, Transport::Tcp, 1, &mut full),
        Outcome::Answered
    );
    assert!(full.len() > 1000);
    let mut out = Vec::new();
    // Fits: copied as it is.
    assert!(fit(&full, 4096, &mut out));
    assert_eq!(out, full);
    // Too large: header and question, TC, no records.
    assert!(fit(&full, 512, &mut out));
    assert!(out.len() <= 512);
    let p = Packet::parse(&out).unwrap();
    assert_eq!(p.id(), 0x1234);
    assert!(p.has_flags(PacketFlag::TRUNCATION | PacketFlag::RESPONSE));
    assert_eq!(p.questions.len(), 1);
    assert!(p.answers.is_empty());
    // A query is no upstream answer.
    assert!(!fit(&q, 512, &mut out));
    assert!(out.is_empty());
}
