//! The routing mesh to program tasks (root: each task a process in its own network namespace,
//! on a TAP, with the kernel's TCP stack): a Python HTTP server published as 8090:8000 answers
//! through every node's published address, and sees the node's ingress sandbox as its client,
//! like Docker. Skips with a printed reason without CAP_NET_ADMIN.

mod cluster;
#[macro_use]
mod lab;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cluster::{three_named_managers_with, wait_until};

const SETTLE: Duration = Duration::from_secs(40);

fn get(addr: &str, path: &str) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: mesh\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("read {addr}: {e}"))?;
    if !body.starts_with("HTTP/1.0 200") {
        return Err(format!("not a 200 from {addr}: {body:?}"));
    }
    Ok(body)
}

#[test]
fn published_port_reaches_program_tasks_in_namespaces() {
    require_lab!();
    if !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!(
            "SKIPPED {}: needs /usr/bin/python3 (the task's HTTP server)",
            module_path!()
        );
        return;
    }
    let (n1, n2, n3) =
        three_named_managers_with("127.95.4", |ip| vec!["--publish-addr".into(), ip.into()]);
    n1.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "kernel-web",
        "--replicas",
        "2",
        "-p",
        "8090:8000",
        "/usr/bin/python3",
        "-m",
        "http.server",
        "8000",
    ]);
    let mut ps = String::new();
    assert!(
        wait_until(SETTLE, || {
            ps = n1.ok(&["service", "ps", "-f", "desired-state=running", "kernel-web"]);
            ps.lines().filter(|l| l.contains(" Running ")).count() == 2
        }),
        "{ps}\n{}",
        n1.log()
    );
    for n in [&n1, &n2, &n3] {
        let addr = format!("{}:8090", n.ip);
        let path = format!("/?from={}", n.ip);
        let mut last = Err(String::new());
        assert!(
            wait_until(SETTLE, || {
                last = get(&addr, &path);
                last.is_ok()
            }),
            "{addr}: {last:?}\n{}",
            n.log()
        );
    }
    // The servers logged each request with the sandbox's ingress address as the client.
    let mut logs = String::new();
    assert!(
        wait_until(SETTLE, || {
            // http.server logs its requests on stderr, which `service logs` keeps apart.
            logs = cluster::stderr(&n1.run(&["service", "logs", "kernel-web"]));
            ["127.95.4.1", "127.95.4.2", "127.95.4.3"]
                .iter()
                .all(|ip| logs.contains(&format!("GET /?from={ip} ")))
        }),
        "{logs}"
    );
    for l in logs.lines().filter(|l| l.contains("GET /?from=")) {
        let client = l.split_once("| ").map_or(l, |(_, r)| r);
        assert!(client.starts_with("10."), "not an ingress address: {l}");
    }
}
