//! The embedded DNS responder's fuzz body: any bytes a task sends to the resolver address.
//!
//! Promises checked besides "no panic": an answer echoes the query's id and has QR set; over
//! UDP it is never larger than the client may take (512 bytes without EDNS, never more than
//! `EDNS_UDP_MAX`); nothing is answered to a message shorter than a header or to a response;
//! `servfail`, `refused` and `fit` keep the same promises.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use swarmnet::dataplane::dns::{self, DnsTable, Outcome, Transport, EDNS_UDP_MAX};
use swarmnet::dataplane::services::{Backend, NetServices, Service, ServiceView};

/// Two networks (the second an ingress one), a vip service with an alias, a dnsrr service of
/// 60 tasks (its answers need truncation) and a service with no task.
fn table() -> &'static DnsTable {
    static TABLE: OnceLock<DnsTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let b = |task: String, ip: Ipv4Addr| Backend { task, ip };
        DnsTable::new(&ServiceView {
            networks: vec![
                NetServices {
                    network: "my-net".into(),
                    ingress: false,
                    services: vec![
                        Service {
                            name: "my-web".into(),
                            aliases: vec!["web".into()],
                            vip: Some(Ipv4Addr::new(10, 0, 1, 2)),
                            backends: vec![
                                b("my-web.1.a".into(), Ipv4Addr::new(10, 0, 1, 3)),
                                b("my-web.2.b".into(), Ipv4Addr::new(10, 0, 1, 4)),
                            ],
                        },
                        Service {
                            name: "many".into(),
                            aliases: vec![],
                            vip: None,
                            backends: (0..60)
                                .map(|i| b(format!("many.{i}.x"), Ipv4Addr::new(10, 0, 2, i + 2)))
                                .collect(),
                        },
                        Service {
                            name: "idle".into(),
                            aliases: vec![],
                            vip: None,
                            backends: vec![],
                        },
                    ],
                },
                NetServices {
                    network: "ingress".into(),
                    ingress: true,
                    services: vec![],
                },
            ],
        })
    })
}

fn check_answer(query: &[u8], out: &[u8], max: Option<usize>) {
    assert!(out.len() >= 12, "an answer shorter than a header");
    assert_eq!(out[..2], query[..2], "the answer does not echo the id");
    assert!(out[2] & 0x80 != 0, "the answer has no QR bit");
    if let Some(max) = max {
        assert!(
            out.len() <= max,
            "{} bytes over UDP, limit {max}",
            out.len()
        );
    }
}

pub fn query(data: &[u8]) {
    let t = table();
    let mut out = Vec::new();
    for (transport, max) in [
        (
            Transport::Udp { max: 1422 },
            Some(usize::from(EDNS_UDP_MAX)),
        ),
        (Transport::Udp { max: 300 }, Some(300)),
        (Transport::Tcp, Some(65535)),
    ] {
        for nets in [&[0usize, 1][..], &[1, 0], &[7], &[]] {
            match t.respond(nets, data, transport, data.len() as u64, &mut out) {
                Outcome::Answered => check_answer(data, &out, max),
                Outcome::Forward | Outcome::Drop(_) => {
                    assert!(out.is_empty(), "bytes left in `out` without an answer")
                }
            }
        }
    }
    // Short or a response: never answered (it could loop between two resolvers).
    if data.len() < 12 || data[2] & 0x80 != 0 {
        assert!(matches!(
            t.respond(&[0], data, Transport::Tcp, 0, &mut out),
            Outcome::Drop(_)
        ));
    }
    for f in [dns::servfail, dns::refused] {
        if f(data, &mut out) {
            check_answer(data, &out, None);
        } else {
            assert!(out.is_empty());
        }
    }
    // An upstream's answer cut for a UDP client.
    if dns::fit(data, 512, &mut out) {
        assert!(out.len() <= 512);
        assert_eq!(out[..2], data[..2]);
    }
}
