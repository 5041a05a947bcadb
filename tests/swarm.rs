//! Swarm membership end to end: real daemons on their own loopback addresses.
//! Each test uses its own 127.77.N.0/24 so tests running in parallel never share a port.

mod cluster;

use std::time::Duration;

use cluster::{stderr, stdout, wait_until, Node};
use swarmnet::api::NOT_A_MANAGER;
use swarmnet::control::ca::{pem_to_der, RootCa};
use swarmnet::control::token::{ca_digest_text, JoinToken};

const SETTLE: Duration = Duration::from_secs(20);

#[test]
fn init_prints_docker_text_and_a_token_bound_to_the_ca() {
    let n1 = Node::start("127.77.1.1");
    let out = n1.init();
    assert!(
        out.starts_with("Swarm initialized: current node ("),
        "{out}"
    );
    assert!(out.contains(") is now a manager.\n\nTo add a worker to this swarm, run the following command:\n\n    swarmnet swarm join --token SWMTKN-1-"), "{out}");
    assert!(out.contains(" 127.77.1.1:2377\n"), "{out}");
    assert!(out.contains("To add a manager to this swarm, run 'swarmnet swarm join-token manager' and follow the instructions."), "{out}");

    let worker = n1.token("worker");
    let manager = n1.token("manager");
    assert!(out.contains(&worker), "init shows the worker token");
    for token in [&worker, &manager] {
        let parts: Vec<&str> = token.split('-').collect();
        assert_eq!(parts.len(), 4, "{token}");
        assert_eq!((parts[0], parts[1]), ("SWMTKN", "1"));
        assert_eq!(parts[2].len(), 50);
        assert_eq!(parts[3].len(), 25);
        assert!(token[7..]
            .bytes()
            .all(|c| c == b'-' || c.is_ascii_digit() || c.is_ascii_lowercase()));
    }
    assert_ne!(worker, manager);

    // The digest part is the SHA-256 of the CA that `swarm ca` prints.
    let ca_pem = n1.ok(&["swarm", "ca"]);
    assert!(
        ca_pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "{ca_pem}"
    );
    let der = pem_to_der(&ca_pem).unwrap();
    assert_eq!(worker.split('-').nth(2).unwrap(), ca_digest_text(&der));
    assert!(JoinToken::parse(&manager).unwrap().matches_ca(&der));

    let inspect = n1.ok(&["swarm", "inspect"]);
    assert!(inspect.contains("\"DataPathPort\": 4789"), "{inspect}");
    assert!(inspect.contains("\"10.0.0.0/8\""), "{inspect}");

    let text = n1.ok(&["swarm", "join-token", "worker"]);
    assert_eq!(
        text,
        format!("To add a worker to this swarm, run the following command:\n\n    swarmnet swarm join --token {worker} 127.77.1.1:2377\n\n")
    );

    let again = n1.fails(&["swarm", "init", "--advertise-addr", "127.77.1.1"]);
    assert!(again.contains("This node is already part of a swarm. Use \"swarmnet swarm leave\" to leave this swarm and join another one."), "{again}");

    let ls = n1.ok(&["node", "ls"]);
    let mut lines = ls.lines();
    let header = lines.next().unwrap();
    check_header(header);
    let row = lines.next().unwrap();
    assert!(row.starts_with(&format!("{} *", n1.id())), "{ls}");
    assert!(
        row.contains("Ready") && row.contains("Active") && row.ends_with("Leader"),
        "{ls}"
    );
}

/// Docker's `node ls` columns, in order, three spaces apart at least.
fn check_header(header: &str) {
    assert!(
        header.starts_with("ID                            HOSTNAME"),
        "{header}"
    );
    let cols = ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"];
    let mut at = 0;
    for col in cols {
        let pos = header[at..]
            .find(col)
            .unwrap_or_else(|| panic!("{col} missing in {header}"));
        assert!(pos >= 3 || at == 0, "{header}");
        at += pos + col.len();
    }
    assert_eq!(at, header.len(), "{header}");
}

#[test]
fn init_flag_validation() {
    let n1 = Node::start("127.77.2.1");
    let err = n1.fails(&[
        "swarm",
        "init",
        "--advertise-addr",
        "127.77.2.1",
        "--data-path-port",
        "80",
    ]);
    // Refused by the command line itself, before the daemon is asked.
    assert!(
        err.contains("invalid value '80' for '--data-path-port <N>': 80 is not in 1024..=49151"),
        "{err}"
    );
    let err = n1.fails(&["swarm", "init", "--advertise-addr", "no-such-iface0"]);
    assert!(
        err.contains("--advertise-addr must be a non-zero IP address or network interface"),
        "{err}"
    );
    let err = n1.fails(&[
        "swarm",
        "init",
        "--advertise-addr",
        "127.77.2.1",
        "--default-addr-pool",
        "10.0.0.0/33",
    ]);
    assert!(
        err.contains("invalid --default-addr-pool 10.0.0.0/33"),
        "{err}"
    );
    // Still not in a swarm after the refusals.
    let err = n1.fails(&["node", "ls"]);
    assert!(err.contains("This node is not part of a swarm"), "{err}");
    let out = n1.ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        "127.77.2.1",
        "--data-path-port",
        "7789",
        "--default-addr-pool",
        "10.20.0.0/16",
        "--default-addr-pool-mask-length",
        "26",
    ]);
    assert!(out.contains("127.77.2.1:2377"), "{out}");
    let inspect = n1.ok(&["swarm", "inspect"]);
    assert!(inspect.contains("\"DataPathPort\": 7789"), "{inspect}");
    assert!(inspect.contains("\"10.20.0.0/16\""), "{inspect}");
    assert!(inspect.contains("\"SubnetSize\": 26"), "{inspect}");
}

#[test]
fn join_as_worker_and_as_manager() {
    let n1 = Node::start("127.77.3.1");
    let n2 = Node::start("127.77.3.2");
    let n3 = Node::start("127.77.3.3");
    n1.init();
    let out = n2.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "This node joined a swarm as a worker.\n");
    let out = n3.join(&n1.token("manager"), &n1);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "This node joined a swarm as a manager.\n");

    let (id1, id2, id3) = (n1.id(), n2.id(), n3.id());
    assert!(
        wait_until(SETTLE, || {
            let lines = n1.node_lines();
            lines.len() == 3 && lines.iter().all(|l| l.contains("Ready"))
        }),
        "{:?}",
        n1.node_lines()
    );
    assert!(n1.node_line(&id1).unwrap().ends_with("Leader"));
    assert!(n1.node_line(&id2).unwrap().trim_end().ends_with("Active"));
    assert!(n1.node_line(&id3).unwrap().ends_with("Reachable"));
    assert!(n1.node_line(&format!("{id1} *")).is_some());

    // The second manager answers manager operations too (forwarded), with its own `*`.
    let from3 = n3.ok(&["node", "ls"]);
    assert!(from3.contains(&format!("{id3} *")), "{from3}");
    assert_eq!(from3.lines().count(), 4, "{from3}");

    // A worker is refused, in Docker's words.
    let err = n2.fails(&["node", "ls"]);
    assert!(err.contains(NOT_A_MANAGER), "{err}");
    let err = n2.fails(&["swarm", "join-token", "worker"]);
    assert!(err.contains(NOT_A_MANAGER), "{err}");

    // Joining twice is refused.
    let out = n2.join(&n1.token("worker"), &n1);
    assert!(
        stderr(&out).contains("This node is already part of a swarm"),
        "{}",
        stderr(&out)
    );

    // Joining through the second manager reaches the leader.
    let n4 = Node::start("127.77.3.4");
    let out = n4.join(&n1.token("worker"), &n3);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(SETTLE, || n1.node_lines().len() == 4));
}

#[test]
fn rotation_refuses_the_old_token_and_keeps_joined_nodes() {
    let n1 = Node::start("127.77.4.1");
    let n2 = Node::start("127.77.4.2");
    let n3 = Node::start("127.77.4.3");
    n1.init();
    let old = n1.token("worker");
    assert!(n2.join(&old, &n1).status.success());
    let id2 = n2.id();

    let out = n1.ok(&["swarm", "join-token", "--rotate", "worker"]);
    assert!(out.starts_with("Successfully rotated worker join token.\n\nTo add a worker to this swarm, run the following command:"), "{out}");
    let new = n1.token("worker");
    assert_ne!(old, new);
    assert_eq!(
        old.split('-').nth(2),
        new.split('-').nth(2),
        "same CA digest"
    );

    let out = n3.join(&old, &n1);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("A valid join token is necessary to join this cluster"),
        "{}",
        stderr(&out)
    );
    // The refused node stays out of the swarm.
    assert!(n3
        .fails(&["node", "ls"])
        .contains("This node is not part of a swarm"));

    let out = n3.join(&new, &n1);
    assert!(out.status.success(), "{}", stderr(&out));

    // The node that joined with the old token keeps working: observed for longer than the
    // 4 s down-after window, it never leaves Ready.
    let watch_until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < watch_until {
        let line = n1.node_line(&id2).unwrap();
        assert!(line.contains("Ready"), "{line}\n{}", n2.log());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(n2.id(), id2);
}

#[test]
fn wrong_ca_digest_and_malformed_tokens_are_refused() {
    let n1 = Node::start("127.77.5.1");
    let n2 = Node::start("127.77.5.2");
    n1.init();
    let good = n1.token("worker");
    let parts: Vec<&str> = good.split('-').collect();
    let other_ca = RootCa::generate().unwrap();
    let forged = format!(
        "SWMTKN-1-{}-{}",
        ca_digest_text(&other_ca.cert_der().unwrap()),
        parts[3]
    );
    let out = n2.join(&forged, &n1);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("remote CA does not match fingerprint"),
        "{}",
        stderr(&out)
    );

    let out = n2.join("SWMTKN-1-bogus", &n1);
    assert!(
        stderr(&out).contains("invalid join token"),
        "{}",
        stderr(&out)
    );
    let out = n2.join(&good.replacen("SWMTKN-1", "SWMTKN-2", 1), &n1);
    assert!(
        stderr(&out).contains("unsupported join token version"),
        "{}",
        stderr(&out)
    );

    // Upper case: refused and said so (tokens are lower-case base 36), not silently accepted.
    let upper = format!("SWMTKN-1-{}", good["SWMTKN-1-".len()..].to_uppercase());
    let out = n2.join(&upper, &n1);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("join tokens are lower case"),
        "{}",
        stderr(&out)
    );
    // An all-z digest is 50 base-36 characters: the error says what is really wrong.
    let zs = format!("SWMTKN-1-{}-{}", "z".repeat(50), parts[3]);
    let err = stderr(&n2.join(&zs, &n1));
    assert!(!err.contains("must be 50"), "{err}");
    assert!(err.contains("does not fit in 32 bytes"), "{err}");

    // The forged attempts left no trace in the swarm and did not make n2 a member.
    assert_eq!(n1.node_lines().len(), 1);
    assert!(n2.join(&good, &n1).status.success());
}

#[test]
fn restart_recovers_membership_from_disk() {
    let mut n1 = Node::start("127.77.6.1");
    let mut n2 = Node::start("127.77.6.2");
    n1.init();
    let worker = n1.token("worker");
    assert!(n2.join(&worker, &n1).status.success());
    let (id1, id2) = (n1.id(), n2.id());
    let ca = n1.ok(&["swarm", "ca"]);

    n1.kill();
    n2.kill();
    n1.restart();
    n2.restart();

    assert_eq!(n1.id(), id1);
    assert_eq!(n2.id(), id2);
    assert_eq!(n1.token("worker"), worker);
    assert_eq!(n1.ok(&["swarm", "ca"]), ca);
    assert!(
        wait_until(SETTLE, || n1
            .node_line(&id2)
            .is_some_and(|l| l.contains("Ready"))),
        "{:?}\n{}",
        n1.node_lines(),
        n2.log()
    );
    assert!(n2.fails(&["node", "ls"]).contains(NOT_A_MANAGER));
}

#[test]
fn leave_and_node_management() {
    let n1 = Node::start("127.77.7.1");
    let n2 = Node::start("127.77.7.2");
    let n3 = Node::start("127.77.7.3");
    n1.init();
    assert!(n2.join(&n1.token("worker"), &n1).status.success());
    assert!(n3.join(&n1.token("worker"), &n1).status.success());
    let (id2, id3) = (n2.id(), n3.id());

    assert_eq!(
        n1.ok(&["node", "update", "--availability", "drain", &id2]),
        format!("{id2}\n")
    );
    assert!(n1.node_line(&id2).unwrap().contains("Drain"));

    let err = n1.fails(&["node", "rm", &id3]);
    assert!(
        err.contains(&format!("node {id3} is not down and can't be removed")),
        "{err}"
    );

    // The last manager refuses to leave without --force.
    let err = n1.fails(&["swarm", "leave"]);
    assert!(err.contains("Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message."), "{err}");

    assert_eq!(n2.ok(&["swarm", "leave"]), "Node left the swarm.\n");
    assert!(n2
        .fails(&["swarm", "leave"])
        .contains("This node is not part of a swarm"));
    assert!(wait_until(SETTLE, || n1
        .node_line(&id2)
        .is_some_and(|l| l.contains("Down"))));
    assert_eq!(n1.ok(&["node", "rm", &id2]), format!("{id2}\n"));
    assert!(n1.node_line(&id2).is_none());

    // Promotion gives n3 a manager certificate: it can then run manager commands.
    assert_eq!(
        n1.ok(&["node", "promote", &id3]),
        format!("Node {id3} promoted to a manager in the swarm.\n")
    );
    assert!(
        wait_until(SETTLE, || n3.run(&["node", "ls"]).status.success()),
        "{}",
        n3.log()
    );
    assert!(n1.node_line(&id3).unwrap().ends_with("Reachable"));
    assert_eq!(
        n1.ok(&["node", "demote", &id3]),
        format!("Manager {id3} demoted in the swarm.\n")
    );
    assert!(wait_until(SETTLE, || n3
        .run(&["node", "ls"])
        .stderr
        .starts_with(b"Error")
        && String::from_utf8_lossy(&n3.run(&["node", "ls"]).stderr)
            .contains(NOT_A_MANAGER)));

    let err = n1.fails(&["node", "demote", &n1.id()]);
    assert!(
        err.contains("attempting to demote the last manager of the swarm"),
        "{err}"
    );
    assert_eq!(
        n1.ok(&["swarm", "leave", "--force"]),
        "Node left the swarm.\n"
    );
    assert!(n1
        .fails(&["node", "ls"])
        .contains("This node is not part of a swarm"));

    // The cluster port is free again at once: a new swarm on the same address.
    let out = n1.init();
    assert!(out.contains("127.77.7.1:2377"), "{out}");
    assert_eq!(n1.node_lines().len(), 1);
}

#[test]
fn encryption_keys_are_delivered_and_rotated() {
    let n1 = Node::start("127.77.8.1");
    let n2 = Node::start("127.77.8.2");
    n1.ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        "127.77.8.1",
        "--key-rotation-interval",
        "2s",
    ]);
    assert!(n2.join(&n1.token("worker"), &n1).status.success());
    let tags = |node: &Node| node.info().encryption_key_tags;
    assert!(
        wait_until(SETTLE, || tags(&n2).len() == 3),
        "{:?}",
        tags(&n2)
    );
    let first = tags(&n2);
    assert!(
        wait_until(SETTLE, || {
            let now = tags(&n2);
            now.len() == 3 && now.iter().max() > first.iter().max()
        }),
        "keys never rotated: {:?}\n{}",
        tags(&n2),
        n1.log()
    );
    // Consecutive tags, three at a time.
    let now = tags(&n2);
    assert_eq!(now[1], now[0] + 1);
    assert_eq!(now[2], now[1] + 1);
}

#[test]
fn three_managers_keep_working_when_a_follower_dies() {
    let n1 = Node::start("127.77.9.1");
    let n2 = Node::start("127.77.9.2");
    let mut n3 = Node::start("127.77.9.3");
    n1.init();
    let token = n1.token("manager");
    assert!(n2.join(&token, &n1).status.success());
    assert!(n3.join(&token, &n1).status.success());
    let id3 = n3.id();
    n3.kill();
    assert!(wait_until(SETTLE, || n1.node_line(&id3).is_some_and(|l| l
        .contains("Down")
        && l.ends_with("Unreachable"))));
    // Both remaining managers still serve manager operations.
    assert!(n2.ok(&["node", "ls"]).contains(&id3));
    let n4 = Node::start("127.77.9.4");
    assert!(n4.join(&n1.token("worker"), &n2).status.success());
    // With one of three managers down, leaving would lose quorum: refused without --force.
    let err = n2.fails(&["swarm", "leave"]);
    assert!(err.contains("Removing this node leaves 1 managers out of 3. Without a Raft quorum your swarm will be inaccessible."), "{err}");
}

#[test]
fn a_removed_node_leaves_by_itself() {
    let n1 = Node::start("127.77.10.1");
    let n2 = Node::start("127.77.10.2");
    n1.init();
    assert!(n2.join(&n1.token("worker"), &n1).status.success());
    let id2 = n2.id();
    assert_eq!(n1.ok(&["node", "rm", "--force", &id2]), format!("{id2}\n"));
    assert!(n1.node_line(&id2).is_none());
    // Its next heartbeat is refused as unknown: the node forgets the swarm.
    assert!(
        wait_until(SETTLE, || n2.info().local_node_state == "inactive"),
        "{:?}\n{}",
        n2.info(),
        n2.log()
    );
    assert!(n2
        .fails(&["node", "ls"])
        .contains("This node is not part of a swarm"));
    // And it can join again, as a new node.
    assert!(n2.join(&n1.token("worker"), &n1).status.success());
    assert_ne!(n2.id(), id2);
}

#[test]
fn after_a_manager_restart_silent_nodes_are_unknown_then_down() {
    let mut n1 = Node::start("127.77.11.1");
    let mut n2 = Node::start("127.77.11.2");
    n1.init();
    assert!(n2.join(&n1.token("worker"), &n1).status.success());
    let id2 = n2.id();
    n2.kill();
    n1.restart();
    // The restarted leader has not heard from n2 yet: it does not claim n2 is down...
    let first = n1.node_line(&id2).unwrap();
    assert!(first.contains("Unknown"), "{first}");
    let err = n1.fails(&["node", "rm", &id2]);
    assert!(err.contains("is not down and can't be removed"), "{err}");
    // ... until n2 has been silent for the whole down-after window.
    assert!(wait_until(SETTLE, || n1
        .node_line(&id2)
        .is_some_and(|l| l.contains("Down"))));
    assert_eq!(n1.ok(&["node", "rm", &id2]), format!("{id2}\n"));
}

#[test]
fn a_manager_that_cannot_listen_is_not_left_in_the_swarm() {
    let n1 = Node::start("127.77.12.1");
    let n2 = Node::start("127.77.12.2");
    n1.init();
    // Something else holds n2's listen address.
    let squatter = std::net::TcpListener::bind("127.77.12.2:2377").unwrap();
    let out = n2.join(&n1.token("manager"), &n1);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("failed to listen on remote API address 127.77.12.2:2377"),
        "{err}"
    );
    assert!(err.contains("the join was undone"), "{err}");
    // Withdrawn: nothing half-joined is left, not even a Down record.
    let id1 = n1.id();
    let others: Vec<String> = n1
        .node_lines()
        .into_iter()
        .filter(|l| !l.starts_with(&id1))
        .collect();
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(n1.info().raft_voters, 1);
    let err = n2.fails(&["node", "ls"]);
    assert!(err.contains("This node is not part of a swarm"), "{err}");

    // Once the address is free, the same join works.
    drop(squatter);
    let out = n2.join(&n1.token("manager"), &n1);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(n2.info().role, Some(swarmnet::api::Role::Manager));
    assert!(wait_until(Duration::from_secs(20), || n1
        .info()
        .raft_voters
        == 2));
}

/// An error whose message already names its cause prints that cause once.
#[test]
fn error_causes_are_printed_once() {
    let out = std::process::Command::new(cluster::BIN)
        .args([
            "replay",
            "--topology",
            "/nonexistent/topology.toml",
            "--in",
            "a=/nonexistent/a.pcap",
            "--out-dir",
            "/nonexistent/out",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/topology.toml"), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
}

/// A promotion that cannot complete (the node cannot listen on its cluster address, so it
/// never becomes a Raft voter) fails after its wait and leaves the node a worker; once the
/// address is free, the promotion succeeds and returns with the node a voter.
#[test]
fn a_promotion_that_cannot_complete_is_reverted() {
    let n1 = Node::start("127.77.13.1");
    let n2 = Node::start("127.77.13.2");
    n1.init();
    let out = n2.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", stderr(&out));
    let id2 = n2.id();
    let squatter = std::net::TcpListener::bind("127.77.13.2:2377").unwrap();
    let err = n1.fails(&["node", "promote", &id2]);
    assert!(err.contains("did not join the Raft group"), "{err}");
    assert!(err.contains("it stays a worker"), "{err}");
    let line = n1.node_line(&id2).unwrap();
    assert!(
        !line.contains("Reachable") && !line.contains("Leader"),
        "{line}"
    );
    assert_eq!(n1.info().raft_voters, 1);
    assert!(
        wait_until(Duration::from_secs(20), || n2.info().role
            == Some(swarmnet::api::Role::Worker)),
        "{:?}",
        n2.info()
    );

    drop(squatter);
    n1.ok(&["node", "promote", &id2]);
    // Returned: the node is a voter already.
    assert_eq!(n1.info().raft_voters, 2);
    let line = n1.node_line(&id2).unwrap();
    assert!(line.ends_with("Reachable"), "{line}");
}
