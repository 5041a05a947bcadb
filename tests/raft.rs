//! Managers replicate the cluster state with Raft: losing the leader, restarting every manager
//! and handing the group over when the leader leaves. Real daemons on 127.77.4N.x.

mod cluster;

use std::time::Duration;

use cluster::{stderr, wait_until, Node};

const SETTLE: Duration = Duration::from_secs(30);

/// Three managers, every one a Raft voter. Returns them with the worker token.
fn three_managers(subnet: u8) -> (Node, Node, Node) {
    cluster::three_managers(&format!("127.77.{subnet}"))
}

/// Repetitions of the join-then-kill sequence: `SWARMNET_QUORUM_REPS` (the issue asks for 20 of
/// 20: `SWARMNET_QUORUM_REPS=20 cargo test --test raft joins_return`), 2 by default.
fn quorum_reps() -> usize {
    std::env::var("SWARMNET_QUORUM_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// The manager a node currently knows as Raft leader.
fn leader_addr(node: &Node) -> Option<String> {
    node.info().raft_leader
}

#[test]
fn three_managers_keep_working_when_the_leader_dies() {
    let (mut n1, n2, n3) = three_managers(40);
    let id1 = n1.id();
    assert_eq!(leader_addr(&n2).as_deref(), Some("127.77.40.1:2377"));
    let worker_token = n1.token("worker");
    let ca = n1.ok(&["swarm", "ca"]);

    n1.kill();
    // A new leader among the survivors, which has the whole state: nodes, CA, tokens.
    assert!(
        wait_until(SETTLE, || leader_addr(&n2)
            .is_some_and(|l| l != "127.77.40.1:2377")),
        "{:?}\n{}",
        n2.info(),
        n2.log()
    );
    assert!(wait_until(SETTLE, || n2.node_line(&id1).is_some_and(|l| l
        .contains("Down")
        && l.ends_with("Unreachable"))));
    assert_eq!(n3.token("worker"), worker_token);
    assert_eq!(n2.ok(&["swarm", "ca"]), ca);
    let lines = n3.node_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.ends_with("Leader")).count(),
        1,
        "{lines:?}"
    );

    // Writes still commit (2 of 3 voters) and new nodes are admitted by the new leader,
    // signing with the replicated CA key.
    n3.ok(&["swarm", "join-token", "--rotate", "worker"]);
    let rotated = n2.token("worker");
    assert_ne!(rotated, worker_token);
    let n4 = Node::start("127.77.40.4");
    let out = n4.join(&rotated, &n2);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(SETTLE, || n3.node_lines().len() == 4));

    // The old leader comes back as a follower and catches up.
    n1.restart();
    assert!(
        wait_until(SETTLE, || n1.token("worker") == rotated),
        "{}",
        n1.log()
    );
    assert!(wait_until(SETTLE, || n1.node_lines().len() == 4));
}

/// `swarm join` with a manager token returns once the node is a voter: killing the leader at
/// once leaves two voters of three, which elect a new leader. Then the survivors refuse a
/// demotion or a leave that would lose quorum, and the lost-quorum error counts right.
#[test]
fn manager_joins_return_as_voters_so_the_leader_may_die_at_once() {
    for rep in 0..quorum_reps() {
        let mut n1 = Node::start("127.77.46.1");
        let n2 = Node::start("127.77.46.2");
        let mut n3 = Node::start("127.77.46.3");
        n1.init();
        let token = n1.token("manager");
        for n in [&n2, &n3] {
            let out = n.join(&token, &n1);
            assert!(out.status.success(), "rep {rep}: {}", stderr(&out));
        }
        // No wait: the joins returned, so the voters are committed.
        n1.kill();
        assert!(
            wait_until(SETTLE, || [&n2, &n3]
                .iter()
                .any(|n| leader_addr(n).is_some_and(|l| l != "127.77.46.1:2377"))),
            "rep {rep}: no new leader\n{:?}\n{}\n{}",
            n2.info(),
            n2.log(),
            n3.log()
        );
        assert!(
            wait_until(SETTLE, || n2
                .run(&["swarm", "join-token", "--rotate", "worker"])
                .status
                .success()),
            "rep {rep}: {}",
            n2.log()
        );
        if rep > 0 {
            continue;
        }
        // Reachable only for voters that answer: the dead leader is not.
        let lines = n3.node_lines();
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.ends_with("Leader")
                    || l.ends_with("Reachable") && !l.ends_with("Unreachable"))
                .count(),
            2,
            "{lines:?}"
        );
        // Two of three voters are up: removing either loses quorum, so both refuse. The node
        // record may change under the command (the new leader marks the dead one down), but
        // as in dockerd the quorum refusal comes before the version check.
        let id3 = n3.id();
        let err = n2.fails(&["node", "demote", &id3]);
        assert!(
            err.contains(
                "can't remove member from the raft: this would result in a loss of quorum"
            ),
            "{err}"
        );
        let err = n3.fails(&["swarm", "leave"]);
        assert!(err.contains("managers out of 3"), "{err}");
        assert!(
            n3.info().node_id.is_some(),
            "a refused leave must leave nothing changed"
        );
        // A third loss: one of three left, and the error says so and names the way out.
        n3.kill();
        let err = n2.fails(&["swarm", "join-token", "--rotate", "worker"]);
        assert!(err.contains("1 of 3 managers reachable"), "{err}");
        assert!(err.contains("--force-new-cluster"), "{err}");
    }
}

#[test]
fn a_whole_manager_group_recovers_from_disk() {
    let (mut n1, mut n2, mut n3) = three_managers(41);
    let ids = [n1.id(), n2.id(), n3.id()];
    let token = n1.token("worker");
    for n in [&mut n1, &mut n2, &mut n3] {
        n.kill();
    }
    for n in [&mut n1, &mut n2, &mut n3] {
        n.restart();
    }
    assert!(
        wait_until(SETTLE, || leader_addr(&n3).is_some()),
        "{}",
        n3.log()
    );
    assert!(wait_until(SETTLE, || n2
        .run(&["node", "ls"])
        .status
        .success()));
    assert_eq!(n2.token("worker"), token);
    assert!(
        wait_until(SETTLE, || {
            let lines = n3.node_lines();
            ids.iter().all(|id| {
                lines
                    .iter()
                    .any(|l| l.starts_with(id.as_str()) && l.contains("Ready"))
            })
        }),
        "{:?}",
        n3.node_lines()
    );
}

#[test]
fn the_leader_hands_over_when_it_leaves_or_is_demoted() {
    let (n1, n2, n3) = three_managers(42);
    let id1 = n1.id();
    // Three reachable managers: one may leave without --force.
    assert_eq!(n1.ok(&["swarm", "leave"]), "Node left the swarm.\n");
    assert!(
        wait_until(SETTLE, || leader_addr(&n2)
            .is_some_and(|l| l != "127.77.42.1:2377")),
        "{:?}",
        n2.info()
    );
    assert!(wait_until(SETTLE, || n2.info().raft_voters == 2));
    assert!(wait_until(SETTLE, || {
        n3.node_line(&id1)
            .is_some_and(|l| l.contains("Down") && !l.contains("Reachable"))
    }));

    // Demoting the new leader moves leadership to the last manager.
    let leader = leader_addr(&n2).unwrap();
    let (leader_node, other) = if leader == n2.addr() {
        (&n2, &n3)
    } else {
        (&n3, &n2)
    };
    // With two managers, demoting one keeps the other: allowed.
    let id = leader_node.id();
    assert_eq!(
        other.ok(&["node", "demote", &id]),
        format!("Manager {id} demoted in the swarm.\n")
    );
    assert!(
        wait_until(SETTLE, || leader_addr(other).as_deref()
            == Some(other.addr().as_str())),
        "{:?}\n{}",
        other.info(),
        other.log()
    );
    assert!(
        wait_until(SETTLE, || leader_node.info().role
            == Some(swarmnet::api::Role::Worker)),
        "{:?}\n{}",
        leader_node.info(),
        leader_node.log()
    );
    assert!(wait_until(SETTLE, || other.node_line(&id).is_some_and(
        |l| l.contains("Ready") && !l.contains("Leader") && !l.contains("Reachable")
    )));
}

#[test]
fn five_managers_survive_two_losses_and_say_so_when_quorum_is_gone() {
    let mut nodes: Vec<Node> = (1..=5)
        .map(|i| Node::start(&format!("127.77.43.{i}")))
        .collect();
    nodes[0].init();
    let token = nodes[0].token("manager");
    for n in &nodes[1..] {
        let out = n.join(&token, &nodes[0]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for n in &nodes {
        assert!(
            wait_until(SETTLE, || n.info().raft_voters == 5),
            "{:?}",
            n.info()
        );
    }
    // Lose the leader and one follower: three of five remain, a majority.
    nodes[0].kill();
    nodes[1].kill();
    assert!(
        wait_until(SETTLE, || leader_addr(&nodes[2]).is_some_and(|l| {
            l != "127.77.43.1:2377" && l != "127.77.43.2:2377"
        })),
        "{:?}\n{:?}\n{:?}\n{}",
        nodes[2].info(),
        nodes[3].info(),
        nodes[4].info(),
        nodes[2].log()
    );
    nodes[4].ok(&["swarm", "join-token", "--rotate", "worker"]);
    assert_eq!(nodes[2].token("worker"), nodes[3].token("worker"));

    // Lose a third: two of five cannot elect a leader, and the CLI says why.
    nodes[2].kill();
    let err = nodes[3].fails(&["swarm", "join-token", "--rotate", "worker"]);
    assert!(err.contains("the swarm has lost quorum"), "{err}");
    assert!(err.contains("2 of 5 managers reachable, 3 needed"), "{err}");
}

#[test]
fn a_promoted_worker_joins_the_raft_group_on_its_own_port() {
    let n1 = Node::start("127.77.44.1");
    let n2 = Node::start("127.77.44.2");
    n1.init();
    let out = n2.run(&[
        "swarm",
        "join",
        "--token",
        &n1.token("worker"),
        "--advertise-addr",
        "127.77.44.2:2400",
        &n1.addr(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id2 = n2.id();
    n1.ok(&["node", "promote", &id2]);
    assert!(
        wait_until(SETTLE, || n1.info().raft_voters == 2
            && n2.info().raft_voters == 2),
        "{:?}\n{}",
        n1.info(),
        n2.log()
    );
    let inspect = n1.ok(&["node", "inspect", &id2]);
    assert!(
        inspect.contains("\"Addr\": \"127.77.44.2:2400\""),
        "{inspect}"
    );
    // The promoted node serves manager operations (forwarded to the leader).
    assert!(n2.ok(&["node", "ls"]).contains(&format!("{id2} *")));
}

#[test]
fn a_manager_joining_after_the_log_was_purged_gets_a_snapshot() {
    let env = [("SWARMNET_RAFT_SNAPSHOT_LOGS", "5")];
    let n1 = Node::start_with_env("127.77.45.1", &env);
    let n2 = Node::start_with_env("127.77.45.2", &env);
    let n3 = Node::start_with_env("127.77.45.3", &env);
    n1.init();
    // Enough writes for snapshots to be built and the log before them purged.
    for _ in 0..12 {
        n1.ok(&["swarm", "join-token", "--rotate", "worker"]);
    }
    assert!(
        wait_until(SETTLE, || n1.info().raft_snapshot.is_some_and(|s| s >= 10)),
        "{:?}",
        n1.info()
    );
    let token = n1.token("manager");
    for n in [&n2, &n3] {
        let out = n.join(&token, &n1);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // The newcomers can only have caught up through a snapshot: the early log is gone.
    for n in [&n2, &n3] {
        assert!(
            wait_until(SETTLE, || {
                let (mine, leader) = (n.info(), n1.info());
                mine.raft_voters == 3 && mine.raft_applied == leader.raft_applied
            }),
            "{:?} vs {:?}\n{}",
            n.info(),
            n1.info(),
            n.log()
        );
    }
    // And they hold the state: with the old leader gone they serve the same tokens.
    let worker = n1.token("worker");
    let mut n1 = n1;
    n1.kill();
    assert!(wait_until(SETTLE, || n2
        .run(&["node", "ls"])
        .status
        .success()));
    assert_eq!(n3.token("worker"), worker);
    assert_eq!(n2.node_lines().len(), 3);
}

/// Two of three managers lost for good: `swarm init --force-new-cluster` on the survivor makes
/// it the only manager of the same swarm (nodes, CA, tokens kept); the lost managers show as
/// down and can be demoted and removed; a new manager joins it.
#[test]
fn force_new_cluster_rebuilds_a_one_manager_swarm_from_a_survivor() {
    let (mut n1, mut n2, n3) = three_managers(47);
    let ids = [n1.id(), n2.id(), n3.id()];
    let worker = n1.token("worker");
    let manager = n1.token("manager");
    let ca = n1.ok(&["swarm", "ca"]);
    n1.kill();
    n2.kill();
    let err = n3.fails(&["node", "ls"]);
    assert!(err.contains("--force-new-cluster"), "{err}");

    let out = n3.ok(&[
        "swarm",
        "init",
        "--force-new-cluster",
        "--advertise-addr",
        &n3.ip,
    ]);
    assert!(out.contains(&format!("current node ({})", ids[2])), "{out}");
    assert!(out.contains(&worker), "{out}");
    assert_eq!(n3.info().raft_leader.as_deref(), Some("127.77.47.3:2377"));
    assert_eq!(n3.info().raft_voters, 1);
    assert_eq!(n3.ok(&["swarm", "ca"]), ca);
    assert_eq!(n3.token("worker"), worker);
    assert_eq!(n3.token("manager"), manager);
    // Writes commit with one manager.
    n3.ok(&["swarm", "join-token", "--rotate", "worker"]);
    // The lost managers are listed, down and unreachable, and can be removed.
    assert!(
        wait_until(SETTLE, || {
            let lines = n3.node_lines();
            lines.len() == 3
                && ids[..2].iter().all(|id| {
                    lines.iter().any(|l| {
                        l.starts_with(id.as_str())
                            && l.contains("Down")
                            && l.ends_with("Unreachable")
                    })
                })
        }),
        "{:?}",
        n3.node_lines()
    );
    for id in &ids[..2] {
        n3.ok(&["node", "demote", id]);
        n3.ok(&["node", "rm", id]);
    }
    assert_eq!(n3.node_lines().len(), 1);
    // A new manager joins the rebuilt swarm with the old manager token, and holds its state.
    let n4 = Node::start("127.77.47.4");
    let out = n4.join(&manager, &n3);
    assert!(out.status.success(), "{}\n{}", stderr(&out), n3.log());
    assert_eq!(n3.info().raft_voters, 2);
    assert!(wait_until(SETTLE, || n4.info().raft_voters == 2));
    assert_eq!(n4.ok(&["swarm", "ca"]), ca);
    let lines = n4.node_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().any(|l| l.ends_with("Leader")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("Reachable") && !l.ends_with("Unreachable")),
        "{lines:?}"
    );
}

/// After `--force-new-cluster`, one of the lost managers comes back with its old state: its
/// campaign is refused, it asks to join the new group, takes the new log and serves its state.
#[test]
fn an_old_manager_coming_back_alone_rejoins_the_forced_cluster() {
    let (mut n1, mut n2, n3) = three_managers(48);
    n1.kill();
    n2.kill();
    n3.ok(&[
        "swarm",
        "init",
        "--force-new-cluster",
        "--advertise-addr",
        &n3.ip,
    ]);
    n3.ok(&["swarm", "join-token", "--rotate", "worker"]);
    let token = n3.token("worker");
    n1.restart();
    assert!(
        wait_until(SETTLE, || n3.info().raft_voters == 2
            && n1.info().raft_voters == 2),
        "{:?}\n{:?}\n{}",
        n3.info(),
        n1.info(),
        n1.log()
    );
    assert_eq!(n1.info().raft_leader.as_deref(), Some("127.77.48.3:2377"));
    assert!(wait_until(SETTLE, || n1
        .run(&["swarm", "join-token", "-q", "worker"])
        .status
        .success()));
    assert_eq!(n1.token("worker"), token);
    let id1 = n1.id();
    assert!(wait_until(SETTLE, || n3.node_line(&id1).is_some_and(|l| l
        .ends_with("Reachable")
        && !l.ends_with("Unreachable"))));
}
