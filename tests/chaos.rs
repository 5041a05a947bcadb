//! Chaos: five managers and two workers (real daemons on 127.77.50.x), a random minority of
//! the managers (and now and then a worker) killed with SIGKILL and restarted every few
//! seconds, while a client keeps writing through random live managers. At the end every
//! acknowledged write is present, nothing appears twice, and the five managers' stores (read
//! from disk once they are stopped) hold the same tables.
//!
//! The writes are what the store holds today: join-token rotations, node availability updates,
//! and nodes joining (and leaving). Networks and services go in [`Op`] once they exist.
//!
//! `CHAOS_SECS` sets the length of the chaos phase (default 30, the CI form); `CHAOS_SEED` the
//! random seed. `scripts/chaos.sh` runs the long form and prints the figures.

mod cluster;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{stdout, wait_until, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmnet::control::store::Store;

const MANAGERS: usize = 5;
const WORKERS: usize = 2;
/// A kill-and-restart round every this long.
const ROUND: Duration = Duration::from_secs(3);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The writes the client makes; each kind keeps what is needed to check it at the end.
#[derive(Debug, Clone, Copy)]
enum Op {
    RotateWorkerToken,
    SetAvailability,
    JoinAndLeave,
}

/// One overwrite-style record: the last acknowledged value, and whether an attempt that was
/// not acknowledged came after it (then the final value may be that attempt's).
#[derive(Default, Debug)]
struct Last {
    acked: Option<String>,
    unsure_after: bool,
}

impl Last {
    fn record(&mut self, ok: bool, value: String) {
        if ok {
            self.acked = Some(value);
            self.unsure_after = false;
        } else {
            self.unsure_after = true;
        }
    }

    /// Checks `actual` when the last write was acknowledged.
    fn check(&self, what: &str, actual: &str) {
        if let (Some(acked), false) = (&self.acked, self.unsure_after) {
            assert_eq!(acked, actual, "{what}: the last acknowledged write is lost");
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    attempts: BTreeMap<&'static str, (u64, u64)>,
    kills: u64,
    restarts: u64,
}

impl Tally {
    fn count(&mut self, kind: &'static str, ok: bool) {
        let entry = self.attempts.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += u64::from(ok);
    }
}

struct Cluster {
    /// Managers first, then workers; a killed node keeps its state dir until restarted.
    nodes: Vec<Node>,
    up: Vec<bool>,
}

impl Cluster {
    fn live_manager_host(&self, rng: &mut StdRng) -> Option<(String, String)> {
        let live: Vec<usize> = (0..MANAGERS).filter(|&i| self.up[i]).collect();
        let i = *live.get(rng.gen_range(0..live.len().max(1)))?;
        Some((self.nodes[i].host(), self.nodes[i].addr()))
    }
}

fn cli(host: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cluster::BIN)
        .args(["-H", host])
        .args(args)
        .output()
        .expect("run swarmnet")
}

#[test]
fn acknowledged_writes_survive_random_manager_kills() {
    let secs = env_u64("CHAOS_SECS", 30);
    let seed = env_u64("CHAOS_SEED", rand::random::<u32>() as u64);
    println!("chaos: {secs} s, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let nodes: Vec<Node> = (1..=MANAGERS + WORKERS)
        .map(|i| Node::start(&format!("127.77.50.{i}")))
        .collect();
    nodes[0].init();
    let manager_token = nodes[0].token("manager");
    let worker_token = nodes[0].token("worker");
    for (i, n) in nodes.iter().enumerate().skip(1) {
        let token = if i < MANAGERS {
            &manager_token
        } else {
            &worker_token
        };
        let out = n.join(token, &nodes[0]);
        assert!(out.status.success(), "{}", cluster::stderr(&out));
    }
    let worker_ids: Vec<String> = nodes[MANAGERS..].iter().map(|n| n.id()).collect();
    let original_ids: Vec<String> = nodes.iter().map(|n| n.id()).collect();
    // Never killed: it joins and leaves again and again (a new node each time).
    let joiner = Node::start("127.77.50.20");

    let cluster = Arc::new(Mutex::new(Cluster {
        up: vec![true; nodes.len()],
        nodes,
    }));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(secs);

    // The chaos: every round, bring back what is down, then kill one or two managers (a
    // minority of five) and, one round in four, a worker.
    let chaos = {
        let cluster = cluster.clone();
        let tally = tally.clone();
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        std::thread::spawn(move || {
            while Instant::now() < deadline {
                std::thread::sleep(ROUND);
                let mut c = cluster.lock().unwrap();
                for i in 0..c.nodes.len() {
                    if !c.up[i] {
                        c.nodes[i].restart();
                        c.up[i] = true;
                        tally.lock().unwrap().restarts += 1;
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
                let victims = rng.gen_range(1..=2);
                for _ in 0..victims {
                    let i = rng.gen_range(0..MANAGERS);
                    if c.up[i] {
                        c.nodes[i].kill();
                        c.up[i] = false;
                        tally.lock().unwrap().kills += 1;
                    }
                }
                if rng.gen_range(0..4) == 0 {
                    let i = rng.gen_range(MANAGERS..MANAGERS + WORKERS);
                    c.nodes[i].kill();
                    c.up[i] = false;
                    tally.lock().unwrap().kills += 1;
                }
            }
        })
    };

    // The client: one write at a time through a random live manager.
    let mut token = Last::default();
    let mut availability: HashMap<String, Last> = HashMap::new();
    let mut joined: Vec<String> = Vec::new();
    let ops = [Op::RotateWorkerToken, Op::SetAvailability, Op::JoinAndLeave];
    while Instant::now() < deadline {
        let op = ops[rng.gen_range(0..ops.len())];
        let Some((host, addr)) = cluster.lock().unwrap().live_manager_host(&mut rng) else {
            continue;
        };
        match op {
            Op::RotateWorkerToken => {
                let out = cli(&host, &["swarm", "join-token", "--rotate", "-q", "worker"]);
                let ok = out.status.success();
                token.record(ok, stdout(&out).trim().to_string());
                tally.lock().unwrap().count("rotate worker token", ok);
            }
            Op::SetAvailability => {
                let id = &worker_ids[rng.gen_range(0..worker_ids.len())];
                let value = ["active", "pause", "drain"][rng.gen_range(0..3)];
                let out = cli(&host, &["node", "update", "--availability", value, id]);
                let ok = out.status.success();
                availability
                    .entry(id.clone())
                    .or_default()
                    .record(ok, value.to_string());
                tally.lock().unwrap().count("node availability", ok);
            }
            Op::JoinAndLeave => {
                let token_now = cli(&host, &["swarm", "join-token", "-q", "worker"]);
                if !token_now.status.success() {
                    continue;
                }
                let token_now = stdout(&token_now).trim().to_string();
                let out = joiner.run(&[
                    "swarm",
                    "join",
                    "--token",
                    &token_now,
                    "--advertise-addr",
                    &joiner.ip,
                    &addr,
                ]);
                let ok = out.status.success();
                tally.lock().unwrap().count("node join", ok);
                if joiner.info().node_id.is_some() {
                    if ok {
                        joined.push(joiner.id());
                    }
                    // A worker leaves locally even when no manager hears of it.
                    joiner.ok(&["swarm", "leave"]);
                }
            }
        }
    }
    chaos.join().expect("chaos thread");

    // Everything back up; the managers converge on one log.
    let mut c = cluster.lock().unwrap();
    for i in 0..c.nodes.len() {
        if !c.up[i] {
            c.nodes[i].restart();
            c.up[i] = true;
        }
    }
    let managers = &c.nodes[..MANAGERS];
    assert!(
        wait_until(Duration::from_secs(60), || {
            let infos: Vec<_> = managers.iter().map(|m| m.info()).collect();
            infos[0].raft_leader.is_some()
                && infos
                    .iter()
                    .all(|i| i.raft_voters == MANAGERS && i.raft_applied == infos[0].raft_applied)
        }),
        "the managers did not converge: {:?}",
        managers.iter().map(|m| m.info()).collect::<Vec<_>>()
    );
    let applied = managers[0].info().raft_applied;
    let (n_kills, n_restarts) = {
        let t = tally.lock().unwrap();
        (t.kills, t.restarts)
    };

    // Read every manager's tables from disk, with the daemons stopped.
    let dirs: Vec<_> = managers.iter().map(|m| m.state_dir()).collect();
    for n in c.nodes.iter_mut() {
        n.kill();
    }
    let mut views = Vec::new();
    for dir in &dirs {
        let store = Store::open(dir).expect("open a manager's store");
        let swarm = store.swarm().unwrap().expect("swarm record");
        let nodes = store.nodes().unwrap();
        let keys = store.encryption_keys().unwrap();
        views.push((swarm, nodes, keys));
    }
    let (swarm, nodes, keys) = &views[0];
    for (i, (s, n, k)) in views.iter().enumerate().skip(1) {
        assert_eq!(
            serde_json::to_string(s).unwrap(),
            serde_json::to_string(swarm).unwrap(),
            "manager {} disagrees on the swarm record",
            i + 1
        );
        assert_eq!(n, nodes, "manager {} disagrees on the nodes", i + 1);
        assert_eq!(k, keys, "manager {} disagrees on the keys", i + 1);
    }

    // Every acknowledged write is there, once.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for n in nodes {
        *seen.entry(n.id.as_str()).or_default() += 1;
    }
    assert!(seen.values().all(|&c| c == 1), "a node appears twice");
    for id in original_ids.iter().chain(&joined) {
        assert_eq!(seen.get(id.as_str()), Some(&1), "node {id} is missing");
    }
    token.check("worker token", &swarm.worker_token);
    for (id, last) in &availability {
        let node = nodes.iter().find(|n| &n.id == id).expect("worker node");
        last.check(
            &format!("availability of {id}"),
            &node.availability.to_string(),
        );
    }

    let t = tally.lock().unwrap();
    println!(
        "chaos figures: {secs} s, seed {seed}, {n_kills} kills, {n_restarts} restarts, final Raft index {applied:?}, {} nodes in the table",
        nodes.len()
    );
    for (kind, (attempts, acked)) in &t.attempts {
        println!("  {kind}: {attempts} attempts, {acked} acknowledged, all present");
    }
}
