//! Two nodes without any privilege on 127.0.0.1 and 127.0.0.2: virtual tasks only, UDP
//! underlay on loopback, VXLAN in cleartext and ESP in UDP. A `fetch` task on one node fetches
//! from a `whoami` task on the other and reports the hash of what it got.
//!
//! Run as root (as CI does), the nodes run as user nobody; run as another user, as that user.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const NOBODY: u32 = 65534;
const WHO: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 20);
const GET: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 21);
const SIZE: u64 = 1 << 20;

/// A directory anyone may write, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("swarmnet-unpriv-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node process, killed on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn topology(i: usize, port: u16, encrypted: bool) -> String {
    let me = Ipv4Addr::new(127, 0, 0, 1 + i as u8);
    let peer = Ipv4Addr::new(127, 0, 0, 2 - i as u8);
    let mut t = format!(
        "[node]\nname = \"u{i}\"\ndata_path_addr = \"{me}\"\ndata_path_port = {port}\n\n\
         [[network]]\nname = \"my-network\"\nvni = 4097\nsubnet = \"10.0.9.0/24\"\n\
         gateway = \"10.0.9.1\"\nencrypted = {encrypted}\n"
    );
    if encrypted {
        t += &format!(
            "\n[encryption]\nkeys = [ {{ tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" }} ]\n\
             primary = 1\ntransport = \"udp\"\nudp_port = {}\n",
            port + 1
        );
    }
    let remote = format!("vtep = \"{peer}\"\n");
    let (who, get) = if i == 0 {
        ("app = \"whoami\"\n".to_string(), remote)
    } else {
        (
            remote,
            format!("app = \"fetch http://{WHO}/data?size={SIZE}\"\n"),
        )
    };
    t +=
        &format!("\n[[endpoint]]\nname = \"who\"\nnetwork = \"my-network\"\nip = \"{WHO}\"\n{who}");
    t +=
        &format!("\n[[endpoint]]\nname = \"get\"\nnetwork = \"my-network\"\nip = \"{GET}\"\n{get}");
    t
}

/// Starts node `i` as an unprivileged user; with `default_paths`, without --counters and
/// --esp-sequence-file (the user's XDG directories, here under `dir`).
fn start(dir: &Path, i: usize, topo: &str, default_paths: bool) -> Proc {
    let state = dir.join(format!("u{i}"));
    std::fs::create_dir_all(&state).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = state.join("topology.toml");
    std::fs::write(&file, topo).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmnet"));
    cmd.args(["run", "--workers", "2", "--topology"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if default_paths {
        cmd.env("XDG_RUNTIME_DIR", &state)
            .env("XDG_STATE_HOME", &state)
            .env_remove("HOME");
    } else {
        cmd.arg("--counters")
            .arg(state.join("counters.json"))
            .arg("--esp-sequence-file")
            .arg(state.join("esp-sequence.json"));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let mut child = cmd.spawn().expect("start swarmnet run");
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let p = Proc { child, lines };
    wait_line(&p, Duration::from_secs(30), |l| l == "ready");
    p
}

/// The first line of `p` that satisfies `pred`, or a panic at `timeout` with what came.
fn wait_line(p: &Proc, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match p.lines.recv_timeout(left) {
            Ok(l) if pred(&l) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no such line within {timeout:?}; got: {seen:#?}"),
        }
    }
}

/// Waits up to 10 s for `cond`.
fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn data_hash(n: u64) -> String {
    let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn carry(tag: &str, port: u16, encrypted: bool) {
    let dir = Dir::new(tag);
    let a = start(&dir.0, 0, &topology(0, port, encrypted), false);
    // Node u1 with the default paths of an unprivileged user.
    let b = start(&dir.0, 1, &topology(1, port, encrypted), true);
    let want = format!(
        "task get: GET http://{WHO}:80/data?size={SIZE}: 200, {SIZE} bytes, sha256 {}",
        data_hash(SIZE)
    );
    // The fetch repeats every second: the first may go before ARP and the peer are ready.
    let line = wait_line(&b, Duration::from_secs(30), |l| l.contains(": 200, "));
    assert_eq!(line, want);
    let state = dir.0.join("u1");
    wait_for(|| state.join("swarmnet/u1/counters.json").exists());
    assert!(state.join("swarmnet/u1/run.lock").exists());
    if encrypted {
        assert!(state.join("swarmnet/nodes/u1/esp-sequence.json").exists());
    }
    drop((a, b));
}

#[test]
fn two_unprivileged_nodes_carry_traffic_between_virtual_tasks() {
    carry(
        "plain",
        30000 + (std::process::id() % 5000) as u16 * 2,
        false,
    );
}

#[test]
fn two_unprivileged_nodes_carry_traffic_over_esp_in_udp() {
    carry("esp", 40000 + (std::process::id() % 4000) as u16 * 2, true);
}

#[test]
fn without_a_writable_default_place_run_says_what_to_pass() {
    let dir = Dir::new("nowhere");
    let file = dir.0.join("t.toml");
    std::fs::write(
        &file,
        "[node]\nname = \"nowhere\"\ndata_path_addr = \"127.0.0.1\"\ndata_path_port = 31998\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmnet"));
    cmd.args(["run", "--topology"])
        .arg(&file)
        .env_remove("XDG_RUNTIME_DIR");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot lock /run/swarmnet/nowhere/run.lock: Permission denied")
            && stderr.contains(
                "choose a writable place for the node's counters and lock with --counters FILE"
            ),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Permission denied").count(),
        1,
        "said once: {stderr}"
    );
}

#[test]
fn an_unprivileged_node_adds_virtual_tasks_live_and_refuses_namespaced_ones() {
    let dir = Dir::new("reload");
    let port = 20000 + (std::process::id() % 5000) as u16 * 2;
    let topo = topology(0, port, false);
    let a = start(&dir.0, 0, &topo, false);
    let file = dir.0.join("u0").join("topology.toml");
    let reload = |text: &str| {
        std::fs::write(&file, text).unwrap();
        // SAFETY: kill(2) on the pid of our own running child.
        unsafe { libc::kill(a.child.id() as libc::pid_t, libc::SIGHUP) };
        wait_line(&a, Duration::from_secs(10), |l| l.starts_with("reload"))
    };
    let namespaced = format!(
        "{topo}\n[[endpoint]]\nname = \"web9\"\nnetwork = \"my-network\"\nip = \"10.0.9.9\"\n"
    );
    assert_eq!(reload(&namespaced), "reload failed");
    let echo = format!(
        "{topo}\n[[endpoint]]\nname = \"echo\"\nnetwork = \"my-network\"\nip = \"10.0.9.9\"\n\
         app = \"echo\"\n"
    );
    assert_eq!(
        reload(&echo),
        format!(
            "reloaded {}: tasks added: echo; removed: none",
            file.display()
        )
    );
}
