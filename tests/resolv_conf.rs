//! A task's /etc/resolv.conf names the node's resolver (with `options ndots:0`), for processes
//! the supervisor starts, for `exec_in` and for `ip netns exec`, while the host's file stays as
//! it was. Needs root (CAP_SYS_ADMIN for namespaces and mounts); skips with a printed reason.

mod lab;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use swarmnet::io::netns::{self, OwnedNetns};
use swarmnet::io::process::{ProcessSpec, Supervisor};

fn skip_reason() -> Option<String> {
    if let Some(why) = lab::skip_reason() {
        return Some(why);
    }
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    if caps & (1 << 21) == 0 {
        return Some("needs CAP_SYS_ADMIN for mount namespaces (run as root; CI does)".into());
    }
    if !Path::new("/etc/resolv.conf").exists() {
        return Some("the host has no /etc/resolv.conf to hide".into());
    }
    None
}

/// Runs `cat /etc/resolv.conf` as a task and returns what it printed once `lines` lines are in
/// its log.
fn run_in_task(sup: &Supervisor, ns: &OwnedNetns, dir: &Path, id: &str, lines: usize) -> String {
    sup.start(ProcessSpec {
        task_id: id.into(),
        name: format!("dns.{id}"),
        netns: ns.name().into(),
        argv: vec!["cat".into(), "/etc/resolv.conf".into()],
        env: vec![],
        hostname: None,
        log_path: dir.join(format!("{id}.log")),
    })
    .expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exits = Vec::new();
    while !exits
        .iter()
        .any(|e: &swarmnet::io::process::Exit| e.task_id == id)
    {
        assert!(Instant::now() < deadline, "task {id} did not end");
        exits.extend(sup.take_exits());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The log copy may trail the exit: wait for the last line.
    loop {
        let log = sup.read_log(id, None, None).expect("read log");
        let text: String = log.iter().map(|l| format!("{}\n", l.line)).collect();
        if lines_in(&text) >= lines || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lines_in(text: &str) -> usize {
    text.lines().filter(|l| !l.is_empty()).count()
}

#[test]
fn tasks_see_the_node_resolver_and_the_host_file_is_untouched() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED {}: {why}", module_path!());
        return;
    }
    let host_before = std::fs::read("/etc/resolv.conf").unwrap();
    let resolver: IpAddr = "10.0.1.250".parse().unwrap();
    let want = netns::resolv_conf_text(resolver);
    assert!(want.contains("nameserver 10.0.1.250\n"));
    assert!(want.contains("options ndots:0\n"));
    assert!(!want.contains("search"));

    let p = lab::prefix("rc");
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new();
    let etc;
    {
        let ns = OwnedNetns::create(&format!("{p}-task")).expect("create namespace");
        ns.set_resolv_conf(resolver).expect("write resolv.conf");
        etc = netns::resolv_conf_path(ns.name());
        assert_eq!(std::fs::read_to_string(&etc).unwrap(), want);

        // A task process.
        assert_eq!(
            run_in_task(&sup, &ns, dir.path(), "t1", lines_in(&want)),
            want
        );

        // `swarmnet exec` (exec_in).
        let copy = dir.path().join("exec.txt");
        let code = netns::exec_in(
            ns.name(),
            &[
                "sh".into(),
                "-c".into(),
                format!("cat /etc/resolv.conf > {}", copy.display()),
            ],
        )
        .expect("exec_in");
        assert_eq!(code, 0);
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), want);

        // `ip netns exec`, by iproute2's own convention.
        let out = Command::new("ip")
            .args(["netns", "exec", ns.name(), "cat", "/etc/resolv.conf"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);

        // The host, and this test's own mount namespace, saw nothing of it.
        assert_eq!(std::fs::read("/etc/resolv.conf").unwrap(), host_before);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts
                .lines()
                .any(|l| l.contains(" /etc/resolv.conf ") && l.contains(ns.name())),
            "the bind leaked into the host's mount namespace"
        );
    }
    // Removed with the namespace.
    assert!(!etc.exists());
    assert!(!etc.parent().unwrap().exists());

    // A namespace without its own resolv.conf: the task sees the host's, as before.
    let ns = OwnedNetns::create(&format!("{p}-plain")).expect("create namespace");
    let host = String::from_utf8_lossy(&host_before);
    let seen = run_in_task(&sup, &ns, dir.path(), "t2", lines_in(&host));
    let host_lines: Vec<&str> = host.lines().filter(|l| !l.is_empty()).collect();
    let seen_lines: Vec<&str> = seen.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(seen_lines, host_lines);
    assert_eq!(std::fs::read("/etc/resolv.conf").unwrap(), host_before);
}
