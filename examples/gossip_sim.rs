//! Gossip at scale, simulated: N nodes on a lossy network in virtual time, every message sealed.
//! Forms the cluster, measures steady-state traffic, then a join and a failure.
//!
//!   cargo run --release --example gossip_sim -- --nodes 1000 --networks 100 --endpoints 10000 --loss 0.01

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use clap::Parser;
use swarmnet::gossip::sim::{sim_addr, sim_node_id, NetConfig, Sim};
use swarmnet::gossip::{EndpointEntry, EndpointState, Event, GossipConfig};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    #[arg(long, default_value_t = 100)]
    networks: usize,
    /// Endpoints in all (spread evenly over the nodes).
    #[arg(long, default_value_t = 10000)]
    endpoints: usize,
    /// Networks each node has tasks on.
    #[arg(long, default_value_t = 5)]
    nets_per_node: usize,
    /// Datagram loss, 0..1.
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of steady state to measure traffic over.
    #[arg(long, default_value_t = 30)]
    steady: u64,
    /// Anti-entropy period, seconds (0: the core's default).
    #[arg(long, default_value_t = 0)]
    sync_secs: u64,
    /// Print formation progress every this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    progress: u64,
    /// Longest wait for the cluster to form, in seconds.
    #[arg(long, default_value_t = 120)]
    form_secs: u64,
}

fn keys() -> Vec<(u32, Vec<u8>)> {
    vec![
        (1, vec![0x11; 16]),
        (2, vec![0x22; 16]),
        (3, vec![0x33; 16]),
    ]
}

fn net_name(k: usize) -> String {
    // Docker network IDs are 25 characters.
    format!("netid{k:020}")
}

fn node_nets(i: usize, a: &Args) -> Vec<String> {
    (0..a.nets_per_node.min(a.networks))
        .map(|j| net_name((i * 7 + j * 13) % a.networks))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Endpoints of node `i`: (network, endpoint ID, entry).
fn node_endpoints(i: usize, a: &Args) -> Vec<(String, String, EndpointEntry)> {
    let per = a.endpoints / a.nodes.max(1);
    let nets = node_nets(i, a);
    (0..per)
        .map(|k| {
            let n = (i * per + k) as u32;
            let id = format!("ep{i:05}x{k:03}{:015}", 0);
            (
                nets[k % nets.len()].clone(),
                id,
                EndpointEntry {
                    task_id: format!("task{i:05}x{k:03}{:015}", 0),
                    task_name: format!("service-{}.{k}.task{i:05}x{k:03}{:015}", n % 500, 0),
                    service_id: format!("svc{:022}", n % 500),
                    service_name: format!("service-{}", n % 500),
                    ip: Ipv4Addr::from(0x0a00_0000 + n),
                    mac: [
                        2,
                        66,
                        (n >> 24) as u8,
                        (n >> 16) as u8,
                        (n >> 8) as u8,
                        n as u8,
                    ],
                    vtep: Ipv4Addr::from(0xc0a8_0000 + i as u32),
                    aliases: vec![format!("alias-{}", n % 500)],
                    state: EndpointState::Running,
                },
            )
        })
        .collect()
}

fn start_node(sim: &mut Sim, i: usize, a: &Args) {
    let nets: BTreeSet<String> = node_nets(i, a).into_iter().collect();
    let eps = node_endpoints(i, a);
    sim.with_node(i, |g, now| {
        g.set_local_networks(nets, now).expect("networks fit");
        for (net, id, e) in eps {
            g.upsert_local_endpoint(&net, &id, e, now)
                .expect("attached");
        }
    });
}

fn join(sim: &mut Sim, i: usize) {
    // The manager-provided list: three seeds.
    let seeds: Vec<_> = (0..3)
        .filter(|s| *s != i)
        .map(|s| (sim_node_id(s), sim_addr(s)))
        .collect();
    sim.with_node(i, |g, now| g.join(&seeds, now));
}

fn converged(sim: &Sim, a: &Args, live: &[usize]) -> bool {
    let want_members = live.len() - 1;
    for &i in live {
        if sim.nodes[i].gossip.members().count() != want_members {
            return false;
        }
    }
    // Expected table sizes from the layout.
    let mut per_net = std::collections::BTreeMap::<String, usize>::new();
    for &i in live {
        for (net, _, _) in node_endpoints(i, a) {
            *per_net.entry(net).or_default() += 1;
        }
    }
    for &i in live {
        for net in node_nets(i, a) {
            let have = sim.nodes[i]
                .gossip
                .table(&net)
                .map(|t| t.len())
                .unwrap_or(0);
            if have != per_net.get(&net).copied().unwrap_or(0) {
                return false;
            }
        }
    }
    true
}

struct Traffic {
    msgs: Vec<u64>,
    bytes: Vec<u64>,
}

fn snapshot(sim: &Sim) -> Traffic {
    Traffic {
        msgs: sim
            .nodes
            .iter()
            .map(|n| n.gossip.stats().sent_msgs)
            .collect(),
        bytes: sim
            .nodes
            .iter()
            .map(|n| n.gossip.stats().sent_bytes)
            .collect(),
    }
}

fn report_traffic(label: &str, sim: &Sim, before: &Traffic, secs: f64, live: &[usize]) {
    let after = snapshot(sim);
    let per = |v: &Vec<u64>, b: &Vec<u64>| -> (f64, f64) {
        let xs: Vec<f64> = live
            .iter()
            .filter(|i| **i < b.len())
            .map(|i| (v[*i] - b[*i]) as f64 / secs)
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        let max = xs.iter().cloned().fold(0.0, f64::max);
        (mean, max)
    };
    let (mm, mx) = per(&after.msgs, &before.msgs);
    let (bm, bx) = per(&after.bytes, &before.bytes);
    println!(
        "{label}: sent per node per second: {mm:.1} msgs mean, {mx:.1} max; {:.2} KB mean, {:.2} KB max",
        bm / 1000.0,
        bx / 1000.0
    );
}

fn main() {
    let a = Args::parse();
    let wall = Instant::now();
    let mut sim = Sim::new(NetConfig {
        loss: a.loss,
        seed: a.seed,
        ..NetConfig::default()
    });
    sim.record_events = false;
    let mut cfg = GossipConfig::default();
    if a.sync_secs > 0 {
        cfg.sync_interval = Duration::from_secs(a.sync_secs);
    }
    for _ in 0..a.nodes {
        sim.add_node(&keys(), cfg.clone(), 0);
    }
    println!(
        "{} nodes, {} networks ({} per node), {} endpoints, loss {:.0}%, probe {:?}, gossip {:?} x{}, anti-entropy {:?}",
        a.nodes,
        a.networks,
        a.nets_per_node,
        a.endpoints,
        a.loss * 100.0,
        cfg.probe_period,
        cfg.gossip_interval,
        cfg.gossip_fanout,
        cfg.sync_interval
    );
    // Formation: nodes join the seeds 5 ms apart.
    for i in 0..a.nodes {
        start_node(&mut sim, i, &a);
        if i > 0 {
            join(&mut sim, i);
        }
        sim.run_for(Duration::from_millis(5));
    }
    let live: Vec<usize> = (0..a.nodes).collect();
    let mut formed = None;
    for s in 0..a.form_secs {
        sim.run_for(Duration::from_secs(1));
        if a.progress > 0 && s % a.progress == 0 {
            let full_members = live
                .iter()
                .filter(|i| sim.nodes[**i].gossip.members().count() == a.nodes - 1)
                .count();
            let table_rows: usize = live
                .iter()
                .map(|i| {
                    node_nets(*i, &a)
                        .iter()
                        .map(|n| sim.nodes[*i].gossip.table(n).map(|t| t.len()).unwrap_or(0))
                        .sum::<usize>()
                })
                .sum();
            println!("  t = {:.0} s: {full_members} nodes know every member; {table_rows} table rows held", sim.secs());
        }
        if converged(&sim, &a, &live) {
            formed = Some(sim.secs());
            break;
        }
    }
    match formed {
        Some(t) => println!(
            "formation: all joined and all tables full at t = {t:.1} s (joins spread over {:.1} s)",
            a.nodes as f64 * 0.005
        ),
        None => {
            let full_members = live
                .iter()
                .filter(|i| sim.nodes[**i].gossip.members().count() == a.nodes - 1)
                .count();
            let min_members = live
                .iter()
                .map(|i| sim.nodes[*i].gossip.members().count())
                .min()
                .unwrap_or(0);
            let mut per_net = std::collections::BTreeMap::<String, usize>::new();
            for &i in &live {
                for (net, _, _) in node_endpoints(i, &a) {
                    *per_net.entry(net).or_default() += 1;
                }
            }
            let (mut held, mut want) = (0usize, 0usize);
            for &i in &live {
                for net in node_nets(i, &a) {
                    held += sim.nodes[i]
                        .gossip
                        .table(&net)
                        .map(|t| t.len())
                        .unwrap_or(0);
                    want += per_net.get(&net).copied().unwrap_or(0);
                }
            }
            println!(
                "formation: NOT converged after {:.0} s: {full_members} of {} nodes know every member (the least knows {min_members} of {}); {held} of {want} table rows held",
                sim.secs(),
                a.nodes,
                a.nodes - 1
            );
        }
    }
    println!(
        "suspicion timeout in force: {:?}",
        sim.nodes[0].gossip.suspicion_timeout()
    );

    // Steady state.
    let before = snapshot(&sim);
    sim.run_for(Duration::from_secs(a.steady));
    report_traffic("steady state", &sim, &before, a.steady as f64, &live);

    // A join.
    let before = snapshot(&sim);
    let t0 = sim.now;
    sim.record_events = true;
    sim.events.clear();
    let j = sim.add_node(&keys(), cfg.clone(), 0);
    start_node(&mut sim, j, &a);
    join(&mut sim, j);
    let jnets: BTreeSet<String> = node_nets(j, &a).into_iter().collect();
    let jeps = node_endpoints(j, &a);
    let on_jnets: Vec<usize> = live
        .iter()
        .copied()
        .filter(|i| node_nets(*i, &a).iter().any(|n| jnets.contains(n)))
        .collect();
    sim.run_for(Duration::from_secs(30));
    let node_j = sim_node_id(j);
    let mut seen_member = vec![None; a.nodes];
    let mut seen_eps = vec![0usize; a.nodes];
    let mut eps_done = vec![None; a.nodes];
    let want_eps = |i: usize| {
        let mine: BTreeSet<String> = node_nets(i, &a).into_iter().collect();
        jeps.iter().filter(|(n, _, _)| mine.contains(n)).count()
    };
    for (i, t, e) in &sim.events {
        if *i >= a.nodes {
            continue;
        }
        match e {
            Event::MemberUp(id) if id.node_id == node_j && seen_member[*i].is_none() => {
                seen_member[*i] = Some(*t - t0)
            }
            Event::EndpointAdded { entry, .. }
                if entry.vtep == Ipv4Addr::from(0xc0a8_0000 + j as u32) =>
            {
                seen_eps[*i] += 1;
                if seen_eps[*i] == want_eps(*i) && eps_done[*i].is_none() {
                    eps_done[*i] = Some(*t - t0);
                }
            }
            _ => {}
        }
    }
    let worst = |v: &[Option<Duration>], who: &[usize]| -> Option<Duration> {
        let mut m = Duration::ZERO;
        for &i in who {
            m = m.max(v[i]?);
        }
        Some(m)
    };
    let fmt = |d: Option<Duration>| {
        d.map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or("NOT within 30 s".into())
    };
    println!(
        "join: seen as member by all {} nodes in {}; its {} endpoints in the tables of all {} nodes on its networks in {}",
        live.len(),
        fmt(worst(&seen_member, &live)),
        jeps.len(),
        on_jnets.len(),
        fmt(worst(&eps_done, &on_jnets))
    );
    let reached = on_jnets.iter().filter(|i| eps_done[**i].is_some()).count();
    if reached < on_jnets.len() {
        let held = on_jnets
            .iter()
            .filter(|i| {
                let mine: BTreeSet<String> = node_nets(**i, &a).into_iter().collect();
                jeps.iter().all(|(n, id, _)| {
                    !mine.contains(n)
                        || sim.nodes[**i]
                            .gossip
                            .table(n)
                            .is_some_and(|t| t.iter().any(|(k, _)| k == id))
                })
            })
            .count();
        println!(
            "join: {reached} of {} nodes on its networks saw all its endpoints added; {held} hold them all at the end",
            on_jnets.len()
        );
    }
    let g = &sim.nodes[j].gossip;
    let mut joiner_rows = (0usize, 0usize);
    for net in node_nets(j, &a) {
        let want = (0..=j)
            .flat_map(|i| node_endpoints(i, &a))
            .filter(|(n, _, _)| *n == net)
            .count();
        joiner_rows.0 += g.table(&net).map(|t| t.len()).unwrap_or(0);
        joiner_rows.1 += want;
    }
    println!(
        "join: after 30 s the joiner knows {} of {} members and holds {} of {} rows of its networks",
        g.members().count(),
        a.nodes,
        joiner_rows.0,
        joiner_rows.1
    );
    report_traffic("join window (30 s)", &sim, &before, 30.0, &live);

    // A failure: a node that is not a seed stops dead.
    let before = snapshot(&sim);
    let k = a.nodes / 2;
    let knets: BTreeSet<String> = node_nets(k, &a).into_iter().collect();
    let live2: Vec<usize> = (0..=j).filter(|i| *i != k).collect();
    let on_knets: Vec<usize> = live2
        .iter()
        .copied()
        .filter(|i| node_nets(*i, &a).iter().any(|n| knets.contains(n)))
        .collect();
    let kvtep = Ipv4Addr::from(0xc0a8_0000 + k as u32);
    let k_eps = node_endpoints(k, &a);
    sim.events.clear();
    sim.nodes[k].alive = false;
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(30));
    let node_k = sim_node_id(k);
    let mut down = vec![None; sim.nodes.len()];
    let mut gone = vec![0usize; sim.nodes.len()];
    let mut gone_done = vec![None; sim.nodes.len()];
    let want_gone = |i: usize| {
        let mine: BTreeSet<String> = node_nets(i, &a).into_iter().collect();
        k_eps.iter().filter(|(n, _, _)| mine.contains(n)).count()
    };
    for (i, t, e) in &sim.events {
        match e {
            Event::MemberDown(id) if id.node_id == node_k && down[*i].is_none() => {
                down[*i] = Some(*t - t0)
            }
            Event::EndpointRemoved { entry, .. } if entry.vtep == kvtep => {
                gone[*i] += 1;
                if gone[*i] == want_gone(*i) && gone_done[*i].is_none() {
                    gone_done[*i] = Some(*t - t0);
                }
            }
            _ => {}
        }
    }
    let first_down = down.iter().flatten().min().copied();
    println!(
        "failure: first node marks it down at {}; all {} others in {}; its endpoints gone from all {} nodes on its networks in {}",
        fmt(first_down),
        live2.len(),
        fmt(worst(&down, &live2)),
        on_knets.len(),
        fmt(worst(&gone_done, &on_knets))
    );
    let false_downs = sim
        .events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::MemberDown(id) if id.node_id != node_k))
        .count();
    println!(
        "failure window: member-down events about live nodes (false positives): {false_downs}"
    );
    report_traffic("failure window (30 s)", &sim, &before, 30.0, &live2);
    let drops: u64 = sim
        .nodes
        .iter()
        .map(|n| {
            swarmnet::gossip::DropReason::ALL
                .iter()
                .map(|r| n.gossip.stats().dropped(*r))
                .sum::<u64>()
        })
        .sum();
    println!(
        "refused by the cores (all reasons): {drops}; lost by the network: {}; wall time {:.1} s",
        sim.dropped_by_net,
        wall.elapsed().as_secs_f64()
    );
}
