//! Small clusters on the simulated network, in virtual time.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sim::{sim_addr, sim_node_id, NetConfig, Sim};
use super::*;

fn keys() -> Vec<(u32, Vec<u8>)> {
    vec![(1, vec![0x11; 16]), (2, vec![0x22; 16])]
}

fn entry(node: usize, k: usize) -> EndpointEntry {
    EndpointEntry {
        task_id: format!("task-{node}-{k}"),
        task_name: format!("websvc-secret.{k}.task-{node}-{k}"),
        service_id: "svc-id-1".into(),
        service_name: "websvc-secret".into(),
        ip: Ipv4Addr::new(10, 0, 9, (node * 10 + k) as u8),
        mac: [2, 66, 10, 0, 9, (node * 10 + k) as u8],
        vtep: Ipv4Addr::new(192, 168, 99, node as u8 + 1),
        aliases: vec!["web-alias".into()],
        state: EndpointState::Running,
    }
}

fn nets(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `n` nodes on network "net-a", each with one endpoint, all joined through node 0.
fn cluster(n: usize, loss: f64) -> Sim {
    cluster_with(n, loss, |_| GossipConfig::default())
}

/// [`cluster`], with node `i`'s configuration from `cfg(i)`.
fn cluster_with(n: usize, loss: f64, cfg: impl Fn(usize) -> GossipConfig) -> Sim {
    let mut sim = Sim::new(NetConfig {
        loss,
        ..NetConfig::default()
    });
    for i in 0..n {
        sim.add_node(&keys(), cfg(i), 0);
    }
    for i in 0..n {
        sim.with_node(i, |g, now| {
            g.set_local_networks(nets(&["net-a"]), now).unwrap();
            g.upsert_local_endpoint("net-a", &format!("ep-{i}"), entry(i, 0), now)
                .unwrap();
        });
    }
    for i in 1..n {
        sim.with_node(i, |g, now| g.join(&[(sim_node_id(0), sim_addr(0))], now));
    }
    sim
}

fn table_ids(sim: &Sim, i: usize, net: &str) -> BTreeSet<String> {
    sim.nodes[i]
        .gossip
        .table(net)
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default()
}

/// The nodes that got an EndpointAdded for `endpoint_id` (since the events were last cleared).
fn added_on(sim: &Sim, endpoint_id: &str) -> Vec<usize> {
    sim.events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::EndpointAdded { endpoint_id: id, .. } if id == endpoint_id))
        .map(|(i, _, _)| *i)
        .collect()
}

/// Node 2 leaves net-a while node 0 loses every datagram (the attachment broadcast and the
/// tombstones), for 1.5 s: shorter than the suspicion time, so node 0 stays a member. Events
/// are cleared first.
fn node_0_misses_node_2_leaving_net_a(sim: &mut Sim) {
    sim.events.clear();
    sim.deaf.insert(0);
    sim.with_node(2, |g, now| g.set_local_networks(nets(&[]), now).unwrap());
    sim.run_for(Duration::from_millis(1500));
    sim.deaf.clear();
}

fn all_ids(n: usize, except: &[usize]) -> BTreeSet<String> {
    (0..n)
        .filter(|i| !except.contains(i))
        .map(|i| format!("ep-{i}"))
        .collect()
}

#[test]
fn five_nodes_converge_on_members_and_tables() {
    let mut sim = cluster(5, 0.0);
    sim.run_for(Duration::from_secs(5));
    for i in 0..5 {
        assert_eq!(sim.nodes[i].gossip.members().count(), 4, "node {i} members");
        assert_eq!(
            table_ids(&sim, i, "net-a"),
            all_ids(5, &[]),
            "node {i} table"
        );
    }
    // The remote entry arrives whole.
    let t = sim.nodes[3].gossip.table("net-a").unwrap();
    let (_, e) = t.iter().find(|(k, _)| *k == "ep-1").unwrap();
    assert_eq!(*e, entry(1, 0));
    // Endpoint events name remote endpoints only.
    let added: BTreeSet<String> = sim
        .events
        .iter()
        .filter(|(i, _, _)| *i == 2)
        .filter_map(|(_, _, e)| match e {
            Event::EndpointAdded { endpoint_id, .. } => Some(endpoint_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(added, all_ids(5, &[2]));
}

#[test]
fn an_endpoint_added_later_spreads_within_a_second_and_a_removal_too() {
    let mut sim = cluster(5, 0.0);
    sim.run_for(Duration::from_secs(5));
    sim.with_node(4, |g, now| {
        g.upsert_local_endpoint("net-a", "late", entry(4, 1), now)
            .unwrap()
    });
    sim.run_for(Duration::from_secs(1));
    for i in 0..4 {
        assert!(table_ids(&sim, i, "net-a").contains("late"), "node {i}");
    }
    sim.with_node(4, |g, now| {
        g.remove_local_endpoint("net-a", "late", now).unwrap()
    });
    sim.run_for(Duration::from_secs(1));
    for i in 0..4 {
        assert!(!table_ids(&sim, i, "net-a").contains("late"), "node {i}");
    }
    assert_eq!(
        sim.with_node(0, |g, now| g.upsert_local_endpoint(
            "net-x",
            "e",
            entry(0, 1),
            now
        )),
        Err(GossipError::NotAttached("net-x".into()))
    );
}

#[test]
fn tables_stay_within_their_network() {
    let mut sim = cluster(5, 0.0);
    sim.with_node(1, |g, now| {
        g.set_local_networks(nets(&["net-a", "net-b"]), now)
            .unwrap();
        g.upsert_local_endpoint("net-b", "b-1", entry(1, 5), now)
            .unwrap();
    });
    sim.with_node(3, |g, now| {
        g.set_local_networks(nets(&["net-a", "net-b"]), now)
            .unwrap()
    });
    sim.capture = true;
    sim.run_for(Duration::from_secs(15));
    assert!(table_ids(&sim, 3, "net-b").contains("b-1"));
    for i in [0, 2, 4] {
        assert!(sim.nodes[i].gossip.table("net-b").is_none());
    }
    // No table gossip or full-state exchange about net-b went to a node not on it (checked on
    // the receivers' side: they never got an EndpointAdded for it).
    assert!(!sim.events.iter().any(|(i, _, e)| [0, 2, 4].contains(i)
        && matches!(e, Event::EndpointAdded { network, .. } if network == "net-b")));
}

#[test]
fn a_killed_node_is_withdrawn_everywhere_within_the_suspicion_time() {
    let mut sim = cluster(5, 0.0);
    sim.run_for(Duration::from_secs(5));
    let suspicion = sim.nodes[0].gossip.suspicion_timeout();
    assert_eq!(
        suspicion,
        Duration::from_secs(2),
        "4 x max(1, log10(6)) x 0.5 s"
    );
    sim.nodes[2].alive = false;
    let killed = sim.now;
    sim.events.clear();
    sim.run_for(Duration::from_secs(10));
    for i in [0, 1, 3, 4] {
        assert_eq!(table_ids(&sim, i, "net-a"), all_ids(5, &[2]), "node {i}");
        assert!(!sim.nodes[i].gossip.is_member_up(&sim_node_id(2)));
        let at = sim
            .events
            .iter()
            .find(|(n, _, e)| {
                *n == i
                    && matches!(e, Event::EndpointRemoved { endpoint_id, .. } if endpoint_id == "ep-2")
            })
            .map(|(_, t, _)| *t - killed)
            .expect("a removal event");
        // Detection (a probe period, its rtt, indirect probes) + suspicion + spreading.
        assert!(
            at <= suspicion + Duration::from_secs(2),
            "node {i} took {at:?}"
        );
    }
}

#[test]
fn a_node_that_leaves_is_withdrawn_at_once_not_after_the_suspicion_time() {
    let mut sim = cluster(5, 0.0);
    sim.run_for(Duration::from_secs(5));
    let suspicion = sim.nodes[0].gossip.suspicion_timeout();
    sim.events.clear();
    let left = sim.now;
    sim.with_node(2, |g, now| g.leave(now));
    sim.nodes[2].alive = false;
    sim.run_for(Duration::from_secs(5));
    for i in [0, 1, 3, 4] {
        assert_eq!(table_ids(&sim, i, "net-a"), all_ids(5, &[2]), "node {i}");
        let at = sim
            .events
            .iter()
            .find(|(n, _, e)| {
                *n == i && matches!(e, Event::MemberDown(m) if m.node_id == sim_node_id(2))
            })
            .map(|(_, t, _)| *t - left)
            .expect("node 2 seen down");
        assert!(at < suspicion, "node {i} took {at:?}");
    }
}

/// Node 0 misses everything node 2's leaving of net-a sends by datagram (the attachment
/// broadcast and any table gossip): the periodic member exchange still brings it node 2's new
/// attachment, and no node takes node 2's old row back from one that still holds it.
#[test]
fn a_missed_network_leave_converges_and_its_rows_never_come_back() {
    let mut sim = cluster(5, 0.0);
    sim.run_for(Duration::from_secs(5));
    assert!(table_ids(&sim, 0, "net-a").contains("ep-2"));
    node_0_misses_node_2_leaving_net_a(&mut sim);
    assert!(
        table_ids(&sim, 0, "net-a").contains("ep-2"),
        "node 0 should have missed the leave"
    );
    for i in [1, 3, 4] {
        assert!(!table_ids(&sim, i, "net-a").contains("ep-2"), "node {i}");
    }
    // Two member-exchange periods and two anti-entropy rounds (with their jitter).
    sim.run_for(Duration::from_secs(65));
    for i in [0, 1, 3, 4] {
        assert_eq!(table_ids(&sim, i, "net-a"), all_ids(5, &[2]), "node {i}");
    }
    let came_back = added_on(&sim, "ep-2");
    assert!(
        came_back.is_empty(),
        "ep-2 came back on nodes {came_back:?}"
    );
    assert_eq!(sim.nodes[0].gossip.members().count(), 4);
}

/// A node that missed another's leaving of a network keeps its rows there for a while and
/// offers them in its full-state exchanges (every second here, and no member exchange to
/// correct it): the nodes that saw the leave refuse them, as written before it.
#[test]
fn rows_from_before_a_network_leave_are_refused_from_a_node_that_missed_it() {
    let mut sim = cluster_with(5, 0.0, |i| GossipConfig {
        sync_interval: Duration::from_secs(if i == 0 { 1 } else { 30 }),
        member_sync: Duration::from_secs(600),
        ..GossipConfig::default()
    });
    sim.run_for(Duration::from_secs(5));
    node_0_misses_node_2_leaving_net_a(&mut sim);
    sim.run_for(Duration::from_secs(10));
    assert!(table_ids(&sim, 0, "net-a").contains("ep-2"));
    for i in [1, 3, 4] {
        assert_eq!(table_ids(&sim, i, "net-a"), all_ids(5, &[2]), "node {i}");
    }
    let came_back = added_on(&sim, "ep-2");
    assert!(
        came_back.is_empty(),
        "ep-2 came back on nodes {came_back:?}"
    );
    // A row node 2 writes after joining the network again is newer than its leave, and spreads.
    sim.with_node(2, |g, now| {
        g.set_local_networks(nets(&["net-a"]), now).unwrap();
        g.upsert_local_endpoint("net-a", "ep-2", entry(2, 0), now)
            .unwrap();
    });
    sim.run_for(Duration::from_secs(2));
    for i in [1, 3, 4] {
        assert_eq!(table_ids(&sim, i, "net-a"), all_ids(5, &[]), "node {i}");
    }
}

/// As above, but node 2 joins net-a again (a task replaced stop-first) before any member
/// exchange: the attachment node 0 then learns lists net-a, so only the tombstones node 2 kept
/// of its old rows, back in its table, tell node 0 that ep-2 went.
#[test]
fn a_node_back_on_a_network_withdraws_its_old_rows_from_a_peer_that_missed_its_leave() {
    let mut sim = cluster_with(5, 0.0, |_| GossipConfig {
        member_sync: Duration::from_secs(600),
        ..GossipConfig::default()
    });
    sim.run_for(Duration::from_secs(5));
    node_0_misses_node_2_leaving_net_a(&mut sim);
    assert!(table_ids(&sim, 0, "net-a").contains("ep-2"));
    sim.with_node(2, |g, now| {
        g.set_local_networks(nets(&["net-a"]), now).unwrap();
        g.upsert_local_endpoint("net-a", "ep-2-new", entry(2, 1), now)
            .unwrap();
    });
    sim.run_for(Duration::from_secs(3));
    let mut want = all_ids(5, &[2]);
    want.insert("ep-2-new".into());
    for i in [0, 1, 3, 4] {
        assert_eq!(table_ids(&sim, i, "net-a"), want, "node {i}");
    }
    let came_back = added_on(&sim, "ep-2");
    assert!(
        came_back.is_empty(),
        "ep-2 came back on nodes {came_back:?}"
    );
}

#[test]
fn a_partition_heals_and_converges() {
    let mut sim = cluster(5, 0.0);
    sim.run_for(Duration::from_secs(5));
    for i in [0, 1] {
        sim.nodes[i].group = 1;
    }
    sim.run_for(Duration::from_secs(15));
    assert_eq!(table_ids(&sim, 0, "net-a"), all_ids(5, &[2, 3, 4]));
    assert_eq!(table_ids(&sim, 3, "net-a"), all_ids(5, &[0, 1]));
    // A change on one side while apart.
    sim.with_node(3, |g, now| {
        g.upsert_local_endpoint("net-a", "during", entry(3, 2), now)
            .unwrap()
    });
    sim.run_for(Duration::from_secs(5));
    for n in &mut sim.nodes {
        n.group = 0;
    }
    // foca's periodic announce (30 s) brings the sides back together.
    sim.run_for(Duration::from_secs(60));
    let mut want = all_ids(5, &[]);
    want.insert("during".into());
    for i in 0..5 {
        assert_eq!(sim.nodes[i].gossip.members().count(), 4, "node {i} members");
        let mut want_i = want.clone();
        want_i.remove(&format!("ep-{i}"));
        want_i.insert(format!("ep-{i}"));
        assert_eq!(table_ids(&sim, i, "net-a"), want_i, "node {i} table");
    }
}

#[test]
fn converges_at_ten_percent_loss() {
    let mut sim = cluster(5, 0.10);
    sim.run_for(Duration::from_secs(10));
    for i in 0..5 {
        assert_eq!(table_ids(&sim, i, "net-a"), all_ids(5, &[]), "node {i}");
    }
}

#[test]
fn sealed_bytes_show_no_names_or_addresses() {
    let mut sim = cluster(3, 0.0);
    sim.capture = true;
    sim.run_for(Duration::from_secs(12));
    assert!(sim.captured.len() > 50);
    assert!(sim
        .captured
        .iter()
        .any(|(_, t)| t.transport == Transport::Tcp));
    let needles: [&[u8]; 5] = [
        b"websvc-secret",
        b"web-alias",
        b"net-a",
        b"node000",
        &[10, 0, 9, 10],
    ];
    for (_, t) in &sim.captured {
        for n in needles {
            assert!(
                !t.payload.windows(n.len()).any(|w| w == n),
                "{:?} readable on the wire",
                String::from_utf8_lossy(n)
            );
        }
    }
    // And the same traffic does carry them once opened (the test would catch a plain wire).
    let ring = Keyring::new(&keys()).unwrap();
    let opened = sim
        .captured
        .iter()
        .filter_map(|(_, t)| ring.open(&t.payload).ok())
        .any(|(_, p)| p.windows(13).any(|w| w == b"websvc-secret"));
    assert!(opened);
}

#[test]
fn tampered_foreign_replayed_and_stranger_packets_are_refused_and_counted() {
    let mut sim = cluster(3, 0.0);
    sim.capture = true;
    sim.run_for(Duration::from_secs(3));
    let (_, pkt) = sim
        .captured
        .iter()
        .find(|(from, t)| *from == 1 && t.to == sim_addr(0) && t.transport == Transport::Udp)
        .cloned()
        .expect("node 1 talked to node 0");
    let dropped = |sim: &Sim, r| sim.nodes[0].gossip.stats().dropped(r);

    // Replay of a datagram node 0 already accepted.
    sim.inject(0, sim_addr(1), &pkt.payload, Transport::Udp);
    assert_eq!(dropped(&sim, DropReason::Replay), 1);

    // Tampered: one bit of the ciphertext.
    let mut t = pkt.payload.clone();
    let last = t.len() - 20;
    t[last] ^= 1;
    sim.inject(0, sim_addr(1), &t, Transport::Udp);
    assert_eq!(dropped(&sim, DropReason::AuthFailed), 1);

    // A node of another swarm: its key tag is unknown here.
    let foreign_keys = vec![(9, vec![0x99; 32])];
    let mut stranger_sim = Sim::new(NetConfig::default());
    stranger_sim.capture = true;
    let a = stranger_sim.add_node(&foreign_keys, GossipConfig::default(), 0);
    stranger_sim.add_node(&foreign_keys, GossipConfig::default(), 0);
    stranger_sim.with_node(a, |g, now| g.join(&[(sim_node_id(1), sim_addr(1))], now));
    let foreign = stranger_sim.captured[0].1.payload.clone();
    sim.inject(0, sim_addr(7), &foreign, Transport::Udp);
    assert_eq!(dropped(&sim, DropReason::UnknownKey), 1);

    // Our tag, another key.
    let same_tag = Keyring::new(&[(2, vec![0x33; 16])])
        .unwrap()
        .seal(5, 5, b"hi");
    sim.inject(0, sim_addr(7), &same_tag, Transport::Udp);
    assert_eq!(dropped(&sim, DropReason::AuthFailed), 2);

    // Our keys, but not a node of the swarm's list.
    let before = dropped(&sim, DropReason::NotMember);
    let list: BTreeSet<String> = [0, 2].iter().map(|i| sim_node_id(*i)).collect();
    sim.nodes[0].gossip.set_swarm_nodes(Some(list));
    sim.run_for(Duration::from_secs(3));
    assert!(dropped(&sim, DropReason::NotMember) > before);

    // Nothing of that reached the tables.
    assert_eq!(table_ids(&sim, 0, "net-a"), all_ids(3, &[]));
}

#[test]
fn a_declared_down_node_cannot_bring_its_rows_back_until_it_rejoins() {
    let mut sim = cluster(3, 0.0);
    sim.capture = true;
    sim.run_for(Duration::from_secs(5));
    // A table datagram node 2 sent earlier, replayed after node 2 is declared down, must not
    // re-add its rows (it is refused as not a member before the replay window even looks).
    let table_pkt = sim
        .captured
        .iter()
        .rev()
        .find(|(from, t)| *from == 2 && t.to == sim_addr(0) && t.transport == Transport::Tcp)
        .map(|(_, t)| t.payload.clone());
    sim.nodes[2].alive = false;
    sim.run_for(Duration::from_secs(6));
    assert_eq!(table_ids(&sim, 0, "net-a"), all_ids(3, &[2]));
    if let Some(p) = table_pkt {
        sim.inject(0, sim_addr(2), &p, Transport::Tcp);
        assert_eq!(table_ids(&sim, 0, "net-a"), all_ids(3, &[2]));
        assert!(sim.nodes[0].gossip.stats().dropped(DropReason::NotMember) >= 1);
    }
    // The node restarts (new bump) and its rows come back everywhere.
    sim.restart(2, &keys(), GossipConfig::default());
    sim.with_node(2, |g, now| {
        g.set_local_networks(nets(&["net-a"]), now).unwrap();
        g.upsert_local_endpoint("net-a", "ep-2", entry(2, 0), now)
            .unwrap();
        g.join(&[(sim_node_id(0), sim_addr(0))], now);
    });
    sim.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(table_ids(&sim, i, "net-a"), all_ids(3, &[]), "node {i}");
    }
}

#[test]
fn random_and_truncated_input_never_panics_and_is_refused() {
    let mut sim = cluster(3, 0.0);
    sim.capture = true;
    sim.run_for(Duration::from_secs(3));
    let samples: Vec<Vec<u8>> = sim
        .captured
        .iter()
        .map(|(_, t)| t.payload.clone())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let ring = Keyring::new(&keys()).unwrap();
    let mut refused = 0;
    for round in 0..3000 {
        let mut bytes = match round % 4 {
            0 => {
                let mut v = vec![0u8; (rng.next_u32() % 1500) as usize];
                rng.fill_bytes(&mut v);
                v
            }
            1 => {
                let s = &samples[rng.next_u32() as usize % samples.len()];
                s[..(rng.next_u32() as usize % s.len())].to_vec()
            }
            2 => {
                let mut s = samples[rng.next_u32() as usize % samples.len()].clone();
                let i = rng.next_u32() as usize % s.len();
                s[i] = s[i].wrapping_add(1 + (rng.next_u32() % 255) as u8);
                s
            }
            _ => {
                // Well sealed, garbage inside: only the decoder stands between it and the core.
                let mut v = vec![0u8; (rng.next_u32() % 600) as usize];
                rng.fill_bytes(&mut v);
                ring.seal(77, 1_000_000 + round as u64, &v)
            }
        };
        if round % 7 == 0 {
            bytes.truncate(bytes.len() / 2);
        }
        let r = sim.nodes[0]
            .gossip
            .handle_datagram(sim_addr(5), &bytes, sim.now);
        if r.is_err() {
            refused += 1;
        }
        let _ = sim.nodes[1]
            .gossip
            .handle_stream_message(sim_addr(5), &bytes, sim.now);
    }
    assert_eq!(refused, 3000);
    let s = sim.nodes[0].gossip.stats();
    assert_eq!(
        DropReason::ALL.iter().map(|r| s.dropped(*r)).sum::<u64>(),
        3000
    );
    assert!(s.dropped(DropReason::Malformed) > 0);
    assert!(s.dropped(DropReason::AuthFailed) > 0);
    // The cluster still works afterwards.
    sim.run_for(Duration::from_secs(3));
    assert_eq!(table_ids(&sim, 0, "net-a"), all_ids(3, &[]));
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut sim = cluster(4, 0.05);
        sim.capture = true;
        sim.run_for(Duration::from_secs(5));
        sim.captured
            .iter()
            .map(|(f, t)| (*f, t.to, t.payload.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// A node's network list travels in one datagram, beside a SWIM message: 40 swarm network IDs
/// (25 characters) fit, 45 do not, and a list refused changes nothing.
#[test]
fn a_nodes_network_list_fits_one_datagram() {
    let mut sim = cluster(2, 0.0);
    let ids = |n: usize| -> BTreeSet<String> { (0..n).map(|i| format!("{i:0>25}")).collect() };
    sim.with_node(0, |g, now| {
        assert!(g.set_local_networks(ids(40), now).is_ok());
        assert!(matches!(
            g.set_local_networks(ids(45), now),
            Err(GossipError::TooManyNetworks(_))
        ));
        assert!(g.table(&format!("{:0>25}", 39)).is_some());
        assert!(g.table(&format!("{:0>25}", 44)).is_none());
    });
}
