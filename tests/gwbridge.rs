//! docker_gwbridge for virtual tasks (no privileges needed): a `swarmnet/fetch` task on an
//! overlay network also gets the way out, and fetches from a server on the host's loopback
//! through the bridge's gateway address (172.18.0.1 stands for the host), while its fetches
//! inside the swarm keep going through its overlay interface.

mod cluster;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster::{wait_until, Node};

/// An HTTP server on 127.0.0.1 that answers every request with 200 and counts them.
fn host_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nfrom host\n");
                count.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    (port, served)
}

#[test]
fn a_virtual_fetch_task_reaches_the_host_through_its_way_out() {
    let (port, served) = host_server();
    let n = Node::start_as("127.94.1.1", "gw-virt");
    n.init();
    n.ok(&["network", "create", "-d", "overlay", "virt-net"]);
    n.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--network",
        "virt-net",
        "swarmnet/whoami",
    ]);
    n.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "out",
        "--network",
        "virt-net",
        "swarmnet/fetch",
        &format!("http://172.18.0.1:{port}/"),
    ]);
    n.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "in",
        "--network",
        "virt-net",
        "swarmnet/fetch",
        "http://web/",
    ]);
    assert!(
        wait_until(Duration::from_secs(40), || served.load(Ordering::Relaxed)
            >= 2
            && n.ok(&["service", "logs", "in"]).matches(": 200,").count() >= 2),
        "served {}; out: {}\nin: {}\n{}",
        served.load(Ordering::Relaxed),
        n.ok(&["service", "logs", "out"]),
        n.ok(&["service", "logs", "in"]),
        n.log()
    );
    let out = n.ok(&["service", "logs", "out"]);
    assert!(out.contains(": 200,"), "{out}");
    // The task's way out shows on docker_gwbridge, as Docker's gateway endpoints.
    let v: serde_json::Value =
        serde_json::from_str(&n.ok(&["network", "inspect", "docker_gwbridge"])).unwrap();
    let eps = v[0]["Containers"].as_object().cloned().unwrap_or_default();
    assert!(
        !eps.is_empty()
            && eps
                .values()
                .all(|e| e["Name"].as_str().unwrap().starts_with("gateway_")),
        "{v}"
    );
    // The fetch inside the swarm logs no failure from its way out.
    let inside = n.ok(&["service", "logs", "in"]);
    assert!(!inside.contains("cannot"), "{inside}");
}
