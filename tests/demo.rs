//! `swarmnet demo` as a user without privileges would run it: as root, the test creates a
//! user and runs the demo as that user (else it runs as the current user, already
//! unprivileged). It checks the exit status, that the routing mesh answered on every node from
//! three distinct tasks, the DNS answers, the node failure, and that nothing is left running or
//! on disk. A second run holds the published port on one node's address first: the demo says
//! so and uses another.

mod cluster;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster::User;

/// Runs `swarmnet demo ARGS` as `user` (or as the current user), with `tmp` as its TMPDIR.
fn demo(user: &Option<User>, bin: &Path, tmp: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg("demo")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("TMPDIR", tmp)
        .env("HOME", tmp);
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid).env("USER", &u.name);
    }
    let out = cmd.output().expect("run swarmnet demo");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The demo's directory, as its first line names it (`... files in DIR`).
fn demo_dir(stdout: &str) -> PathBuf {
    let first = stdout.lines().next().unwrap_or_default();
    PathBuf::from(
        first
            .rsplit_once("files in ")
            .map(|(_, d)| d.trim())
            .unwrap_or_else(|| panic!("no directory on the first line: {first:?}")),
    )
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

/// Processes running as `uid`.
fn processes_of(uid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        if owner == Some(uid) {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// The task names that answered through the routing mesh before the node failure, and the
/// addresses (`127.0.0.N:PORT`) that answered.
fn mesh_answers(stdout: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut tasks = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    let section = stdout
        .split("] The routing mesh")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a routing mesh step");
    for l in section.lines() {
        if let Some(rest) = l.trim().strip_prefix("http://") {
            nodes.insert(rest.split('/').next().unwrap_or_default().to_string());
        }
        if let Some((_, rest)) = l.split_once(" answered by ") {
            tasks.insert(rest.split(' ').next().unwrap_or_default().to_string());
        }
    }
    (tasks, nodes)
}

#[test]
fn the_demo_runs_unprivileged_shows_the_mesh_and_leaves_nothing() {
    let user = cluster::unprivileged_user();
    match &user {
        Some(u) => println!("running the demo as {} (uid {})", u.name, u.uid),
        None => println!(
            "running the demo as the current user (uid {}), who has no privilege",
            cluster::euid()
        ),
    }
    // The binary and the demo's TMPDIR where the user can reach them.
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = tmp.path().join("swarmnet");
    std::fs::copy(cluster::BIN, &bin).expect("copy the binary");
    let run_tmp = tmp.path().join("tmp");
    std::fs::create_dir(&run_tmp).unwrap();
    if let Some(u) = &user {
        std::os::unix::fs::chown(&run_tmp, Some(u.uid), Some(u.gid)).unwrap();
    }

    let out = demo(&user, &bin, &run_tmp, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the demo failed: {}", out.status);
    let dir = demo_dir(&stdout);
    let (tasks, nodes) = mesh_answers(&stdout);
    assert_eq!(tasks.len(), 3, "tasks through the routing mesh: {tasks:?}");
    assert!(tasks.iter().all(|t| t.starts_with("whoami.")), "{tasks:?}");
    let port = nodes
        .iter()
        .next()
        .and_then(|n| n.rsplit(':').next())
        .expect("a published port")
        .to_string();
    let want: BTreeSet<String> = (1..=3).map(|i| format!("127.0.0.{i}:{port}")).collect();
    assert_eq!(nodes, want, "every node answers on the published port");
    // DNS from inside the overlay: the VIP, then the three tasks.
    let vip = stdout
        .lines()
        .find_map(|l| l.split_once("lookup whoami: ").map(|(_, a)| a.to_string()))
        .expect("an answer for whoami");
    assert!(vip.starts_with("10.") && !vip.contains(' '), "{vip}");
    let tasks_answer = stdout
        .lines()
        .find_map(|l| {
            l.split_once("lookup tasks.whoami: ")
                .map(|(_, a)| a.to_string())
        })
        .expect("an answer for tasks.whoami");
    assert_eq!(tasks_answer.split(' ').count(), 3, "{tasks_answer}");
    assert!(!tasks_answer.contains(&vip), "{tasks_answer} {vip}");
    // The failure: seen down, its task replaced.
    assert!(stdout.contains("node-3 is down"), "no node failure shown");
    assert!(stdout.contains("runs again elsewhere"), "no task moved");
    // Nothing left: no process from the demo's directory (nor of the user), no directory.
    assert!(!dir.exists(), "{} is left", dir.display());
    let left = processes_with(&dir.to_string_lossy());
    assert!(left.is_empty(), "left running: {left:?}");
    if let Some(u) = user.as_ref().filter(|u| u.name == cluster::TEST_USER) {
        let left = processes_of(u.uid);
        assert!(left.is_empty(), "processes of {} left: {left:?}", u.name);
    }

    // The published port taken on node-2's address: the demo names it and uses another.
    let held = TcpListener::bind(("127.0.0.2", port.parse::<u16>().unwrap()))
        .expect("hold the published port");
    let out = demo(&user, &bin, &run_tmp, &["--nodes", "2", "--encrypted"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    drop(held);
    assert!(out.status.success(), "the demo failed: {}", out.status);
    let said = format!("port {port} is taken on 127.0.0.2, so the demo uses ");
    let other = stdout
        .lines()
        .find_map(|l| l.split_once(&said).map(|(_, p)| p.trim().to_string()))
        .unwrap_or_else(|| panic!("no word of the taken port {port}"));
    assert_ne!(other, port);
    let (tasks, nodes) = mesh_answers(&stdout);
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let want: BTreeSet<String> = (1..=2).map(|i| format!("127.0.0.{i}:{other}")).collect();
    assert_eq!(nodes, want);
    assert!(
        stdout.contains("--opt encrypted demo-net"),
        "the network is not encrypted"
    );
    let dir = demo_dir(&stdout);
    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(processes_with(&dir.to_string_lossy()).is_empty());
}
