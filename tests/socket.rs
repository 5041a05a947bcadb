//! The daemon's API socket answers its owner only.

mod cluster;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

use cluster::{Node, BIN};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn socket_is_owner_only() {
    let node = Node::start("127.77.30.1");
    let meta = std::fs::metadata(&node.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let state = std::fs::metadata(node.state_dir()).unwrap();
    assert_eq!(
        state.permissions().mode() & 0o777,
        0o700,
        "state dir holds keys"
    );
}

#[test]
fn socket_refuses_other_users() {
    if !is_root() {
        eprintln!("SKIPPED socket_refuses_other_users: switching to another uid needs root");
        return;
    }
    let node = Node::start("127.77.31.1");
    // Let other users reach the socket file, so only its own mode stands in the way.
    std::fs::set_permissions(node.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = || {
        Command::new(BIN)
            .args(["-H", &node.host(), "node", "ls"])
            .uid(NOBODY)
            .gid(NOBODY)
            .env_remove("HOME")
            .output()
            .expect("run swarmnet as nobody")
    };
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Permission denied"), "{err}");

    // Even with the file mode loosened by hand, the daemon checks the caller's uid.
    std::fs::set_permissions(&node.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "permission denied: this swarmnet daemon's socket belongs to uid 0, you are uid 65534"
        ),
        "{err}"
    );
    // The owner is still served.
    assert!(node
        .fails(&["node", "ls"])
        .contains("This node is not part of a swarm"));
}

#[test]
fn a_group_given_with_dash_g_may_use_the_socket_and_nobody_else() {
    if !is_root() {
        eprintln!("SKIPPED a_group_given_with_dash_g_may_use_the_socket_and_nobody_else: switching to another uid needs root");
        return;
    }
    let user = cluster::unprivileged_user().expect("root makes a user");
    let node = Node::start_with_args("127.77.39.1", "grouped", &["-G", &user.gid.to_string()]);
    let meta = std::fs::metadata(&node.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), user.gid);
    // Let other users reach the socket file, so only its own mode and group stand in the way.
    std::fs::set_permissions(node.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_user = |uid: u32, gid: u32| {
        Command::new(BIN)
            .args(["-H", &node.host(), "node", "ls"])
            .uid(uid)
            .gid(gid)
            .env_remove("HOME")
            .output()
            .expect("run swarmnet as another user")
    };
    // A member of the group is served: the daemon answers (it is not in a swarm yet).
    let out = as_user(user.uid, user.gid);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("This node is not part of a swarm"), "{err}");
    // Anyone else is refused by the kernel ...
    let out = as_user(NOBODY, NOBODY);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    // ... and by the daemon, with the mode loosened by hand.
    std::fs::set_permissions(&node.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_user(NOBODY, NOBODY);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied: this swarmnet daemon's socket belongs to uid 0"),
        "{err}"
    );
    // An unknown group is refused before anything starts.
    let out = Command::new(BIN)
        .args(["daemon", "-G", "no-such-group-here"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no group \"no-such-group-here\" in /etc/group"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_cli_finds_the_daemon_through_swarmnet_host() {
    let node = Node::start("127.77.32.1");
    let out = Command::new(BIN)
        .args(["swarm", "init", "--advertise-addr", "127.77.32.1"])
        .env("SWARMNET_HOST", node.host())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // -H wins over the environment.
    let out = Command::new(BIN)
        .args(["-H", &node.host(), "node", "ls", "-q"])
        .env("SWARMNET_HOST", "unix:///nonexistent/swarmnet.sock")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["node", "ls"])
        .env("SWARMNET_HOST", "unix:///nonexistent/swarmnet.sock")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Cannot connect to the swarmnet daemon at unix:///nonexistent/swarmnet.sock"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["-H", "tcp://127.0.0.1:2375", "node", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only unix:///path/to/socket is supported"),
        "{err}"
    );
}

/// Sends raw bytes on a new connection to `socket`, closes the write side and returns all
/// that the daemon answered before closing.
fn raw_exchange(socket: &std::path::Path, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_or_oversized_requests_are_answered_with_an_error() {
    let node = Node::start("127.77.33.1");
    let sock = &node.socket;
    let out = raw_exchange(sock, b"GARBAGE\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(
        out.ends_with("{\"message\":\"malformed HTTP request: the request line or a header could not be parsed\"}\n"),
        "{out}"
    );
    let body = "{\"AdvertiseAddr\":";
    let out = raw_exchange(
        sock,
        format!(
            "POST /v1.41/swarm/init HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(
        out.contains("{\"message\":\"malformed JSON body: "),
        "{out}"
    );
    // A 16 MiB body (what the framed protocol allowed) is refused before it is read.
    let out = raw_exchange(
        sock,
        b"POST /v1.41/swarm/init HTTP/1.1\r\nHost: x\r\nContent-Length: 16777216\r\n\r\n{",
    );
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("larger than the 1048576-byte limit"), "{out}");
    let mut head = b"GET /_ping HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1700 {
        head.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(40)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let out = raw_exchange(sock, &head);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert!(
        out.contains("{\"message\":\"request headers larger than the 65536-byte limit\"}"),
        "{out}"
    );
    let out = raw_exchange(sock, b"GET /v1.41/nothing/json HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert!(out.ends_with("{\"message\":\"page not found\"}\n"), "{out}");
    // Still serving.
    assert!(node.ok(&["wait", "--timeout", "5"]).is_empty());
}

#[test]
fn silent_and_half_sent_connections_are_closed() {
    use std::io::{Read, Write};
    let node = Node::start("127.77.34.1");
    let started = std::time::Instant::now();
    let mut silent = std::os::unix::net::UnixStream::connect(&node.socket).unwrap();
    let mut half = std::os::unix::net::UnixStream::connect(&node.socket).unwrap();
    half.write_all(b"GET /_ping HTTP/1.1\r\nHost:").unwrap();
    for s in [&mut silent, &mut half] {
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut buf = Vec::new();
        // Closed by the daemon (EOF, or a 408 then EOF), not by our read timeout.
        let n = s.read_to_end(&mut buf);
        assert!(n.is_ok(), "connection not closed by the daemon: {n:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(25),
        "closed only after {waited:?}"
    );
}

#[test]
fn a_planted_socket_directory_or_socket_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED a_planted_socket_directory_or_socket_is_refused: creating files as another user needs root");
        return;
    }
    const VICTIM: u32 = 47101;
    const ATTACKER: u32 = 47102;
    let dir = std::path::PathBuf::from(format!("/tmp/swarmnet-{VICTIM}"));
    let _ = std::fs::remove_dir_all(&dir);
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    // The attacker's directory and socket, where the victim's CLI looks by default.
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.join("swarmnet.sock");
    let trap = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    trap.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&dir, Some(ATTACKER), Some(ATTACKER)).unwrap();
    std::os::unix::fs::chown(&sock, Some(ATTACKER), Some(ATTACKER)).unwrap();
    let as_victim = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .uid(VICTIM)
            .gid(VICTIM)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("run swarmnet as the victim")
    };
    let join = [
        "swarm",
        "join",
        "--token",
        "SWMTKN-1-0000000000000000000000000000000000000000000000000-0000000000000000000000000",
        "127.0.0.1:2377",
    ];
    let out = as_victim(&join);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "refusing the API socket directory /tmp/swarmnet-{VICTIM}: it belongs to uid {ATTACKER}"
        )),
        "{err}"
    );
    // The directory is the victim's, the socket in it is not.
    std::os::unix::fs::chown(&dir, Some(VICTIM), Some(VICTIM)).unwrap();
    let out = as_victim(&join);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "refusing the API socket {}: it belongs to uid {ATTACKER}",
            sock.display()
        )),
        "{err}"
    );
    // Nothing ever reached the planted socket.
    assert!(trap.accept().is_err(), "the CLI connected to the trap");
    drop(trap);

    // Files the victim owns, but the process answering runs as the attacker: its daemon binds
    // in its own directory, and the socket is then moved into the victim's.
    std::fs::remove_file(&sock).unwrap();
    let lair = std::path::PathBuf::from(format!("/tmp/swarmnet-test-lair-{ATTACKER}"));
    let _ = std::fs::remove_dir_all(&lair);
    let _lair_cleanup = Cleanup(lair.clone());
    let mut fake = Command::new(BIN)
        .args([
            "-H",
            &format!("unix://{}/api.sock", lair.display()),
            "daemon",
        ])
        .arg("--state-dir")
        .arg(lair.join("state"))
        .uid(ATTACKER)
        .gid(ATTACKER)
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = cluster::wait_until(std::time::Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(lair.join("api.sock")).is_ok()
    });
    if up {
        std::fs::rename(lair.join("api.sock"), &sock).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::chown(&sock, Some(VICTIM), Some(VICTIM)).unwrap();
    }
    let out = as_victim(&join);
    let _ = fake.kill();
    let _ = fake.wait();
    assert!(up, "the attacker's daemon did not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the process answering on it runs as uid {ATTACKER}"
        )),
        "{err}"
    );
}

#[test]
fn the_daemon_refuses_a_socket_directory_it_does_not_own() {
    if !is_root() {
        eprintln!("SKIPPED the_daemon_refuses_a_socket_directory_it_does_not_own: needs root to create another user's directory");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = base.path().join("planted");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&dir, Some(47102), Some(47102)).unwrap();
    let out = Command::new(BIN)
        .args([
            "-H",
            &format!("unix://{}/api.sock", dir.display()),
            "daemon",
        ])
        .args(["--state-dir", "/tmp/swarmnet-test-47101-state"])
        .uid(47101)
        .gid(47101)
        .env_clear()
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all("/tmp/swarmnet-test-47101-state");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "refusing the API socket directory {}: it belongs to uid 47102",
            dir.display()
        )),
        "{err}"
    );
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn descriptor_exhaustion_backs_off_and_keeps_the_listener() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIPPED descriptor_exhaustion_backs_off_and_keeps_the_listener: prlimit (util-linux) not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let log_path = dir.path().join("daemon.log");
    let mut daemon = Command::new("prlimit")
        .arg("--nofile=32:32")
        .arg(BIN)
        .args(["-H", &format!("unix://{}", socket.display()), "daemon"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = daemon.id();
    let _guard = Kill(&mut daemon);
    let host = format!("unix://{}", socket.display());
    let ping = || {
        Command::new(BIN)
            .args(["-H", &host, "wait", "--timeout", "10"])
            .status()
            .unwrap()
            .success()
    };
    assert!(ping(), "daemon did not come up");
    // More connections than descriptors: the daemon runs out and must not spin.
    let conns: Vec<_> = (0..60)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        cluster::wait_until(std::time::Duration::from_secs(10), || log()
            .contains("Too many open files")),
        "descriptors never ran out: {}",
        log()
    );
    let ticks_per_sec = 100; // USER_HZ on Linux
    let before = cpu_ticks(pid);
    let window = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(2)); // a measurement window, not a wait
    let used = cpu_ticks(pid) - before;
    let elapsed = window.elapsed().as_secs_f64();
    eprintln!("out of descriptors: {used} ticks of CPU in {elapsed:.1}s");
    assert!(
        (used as f64 / ticks_per_sec as f64) < 0.25 * elapsed,
        "accept loop used {used} ticks of CPU in {elapsed:.1}s while out of descriptors"
    );
    let reports = log().matches("API socket accept failed").count();
    assert!(reports <= 2, "{reports} accept-failure lines:\n{}", log());
    drop(conns);
    // Served again once the connections are gone: the listener survived.
    assert!(ping(), "the listener did not recover:\n{}", log());
    assert!(log().contains("API socket accepts again"), "{}", log());
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn memory_stays_bounded_under_waves_of_large_requests() {
    let node = Node::start("127.77.35.1");
    let pid = node.pid().expect("daemon running");
    let baseline = rss_kib(pid);
    let body = vec![b'['; 1024 * 1024 - 16];
    let mut after_wave = Vec::new();
    for _ in 0..3 {
        let threads: Vec<_> = (0..60)
            .map(|i| {
                let socket = node.socket.clone();
                let body = body.clone();
                std::thread::spawn(move || {
                    // Half send a whole 1 MiB body, half only claim 16 MiB.
                    let len = if i % 2 == 0 { body.len() } else { 16 << 20 };
                    let mut req = format!(
                        "POST /v1.41/swarm/init HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n"
                    )
                    .into_bytes();
                    if i % 2 == 0 {
                        req.extend_from_slice(&body);
                    }
                    raw_exchange(&socket, &req)
                })
            })
            .collect();
        for t in threads {
            let out = t.join().unwrap();
            assert!(
                out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.1 413"),
                "{}",
                &out[..out.len().min(200)]
            );
        }
        after_wave.push(rss_kib(pid));
    }
    eprintln!("daemon RSS: {baseline} KiB before, after each wave {after_wave:?} KiB");
    let grown = after_wave.iter().max().unwrap() - baseline;
    assert!(
        grown < 96 * 1024,
        "RSS grew {grown} KiB for 60 connections of at most 1 MiB each"
    );
    assert!(
        after_wave[2] <= after_wave[0] + 16 * 1024,
        "memory keeps growing wave after wave: {after_wave:?}"
    );
}

#[test]
fn concurrent_connections_are_bounded() {
    let node = Node::start("127.77.36.1");
    // 64 idle connections take every slot; the next client waits in the backlog...
    let mut idle: Vec<_> = (0..64)
        .map(|_| std::os::unix::net::UnixStream::connect(&node.socket).unwrap())
        .collect();
    let ping = |timeout: &str| {
        Command::new(BIN)
            .args(["-H", &node.host(), "wait", "--timeout", timeout])
            .output()
            .unwrap()
    };
    // (a connection that is never accepted: `wait` gives up after its timeout)
    let out = ping("1");
    assert!(!out.status.success(), "answered with every slot taken");
    // ...and is served as soon as one slot frees.
    idle.pop();
    let out = ping("10");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn swarmnets_own_routes_live_under_one_prefix() {
    let node = Node::start("127.77.37.1");
    node.init();
    let get = |target: &str| {
        raw_exchange(
            &node.socket,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let out = get("/swarmnet/swarm");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"KeyRotationIntervalSecs\":43200"), "{out}");
    assert!(out.contains("\"RootCADigest\":\""), "{out}");
    let out = get("/v1.41/swarmnet/info");
    assert!(out.contains("\"LocalNodeState\":\"active\""), "{out}");
    let out = get("/swarmnet/swarm/ca");
    assert!(out.contains("BEGIN CERTIFICATE"), "{out}");
    let out = get("/swarmnet/nothing");
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

#[test]
fn a_users_default_socket_serves_that_user() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_users_default_socket_serves_that_user: switching to another uid needs root"
        );
        return;
    }
    const USER: u32 = 47103;
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(USER), Some(USER)).unwrap();
    let sock_dir = std::path::PathBuf::from(format!("/tmp/swarmnet-{USER}"));
    let _ = std::fs::remove_dir_all(&sock_dir);
    let as_user = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .uid(USER)
            .gid(USER)
            .env_clear()
            .env("HOME", home.path());
        c
    };
    let mut daemon = as_user(&["daemon"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waited = as_user(&["wait", "--timeout", "20"]).output().unwrap();
    let ls = as_user(&["node", "ls"]).output().unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let dir_mode = std::fs::metadata(&sock_dir).map(|m| m.permissions().mode() & 0o777);
    let _ = std::fs::remove_dir_all(&sock_dir);
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ls.stderr).contains("This node is not part of a swarm"),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert_eq!(
        dir_mode.unwrap(),
        0o700,
        "the socket directory is the user's alone"
    );
}

#[test]
fn the_daemon_says_when_its_socket_answers() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let mut daemon = Command::new(BIN)
        .args(["-H", &format!("unix://{}", socket.display()), "daemon"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let read = std::io::BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line);
    // Right after the line, in one attempt: the socket answers.
    let answered = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(swarmnet::api::client::Client::new(&socket).ping());
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(read.is_ok());
    assert_eq!(
        line,
        format!(
            "swarmnet daemon ready: API on unix://{}\n",
            socket.display()
        )
    );
    assert!(answered.is_ok(), "{answered:?}");
}

#[test]
fn a_client_that_never_reads_its_answers_is_dropped() {
    use std::io::Write;
    let node = Node::start("127.77.38.1");
    let mut conn = std::os::unix::net::UnixStream::connect(&node.socket).unwrap();
    // Pipelined requests, never reading: the answers fill the socket buffers and the daemon's
    // writes stall. The writer stops only when the daemon closes the connection.
    let writer = std::thread::spawn(move || {
        let req = b"GET /v1.41/info HTTP/1.1\r\nHost: x\r\n\r\n";
        for _ in 0..100_000 {
            if conn.write_all(req).is_err() {
                return true;
            }
        }
        false
    });
    assert!(
        cluster::wait_until(std::time::Duration::from_secs(40), || writer.is_finished()),
        "the daemon kept a connection whose client reads nothing"
    );
    assert!(
        writer.join().unwrap(),
        "the daemon read 100000 requests without answering"
    );
    assert!(node.ok(&["wait", "--timeout", "5"]).is_empty());
}

/// `swarmnet network ls | head -0`: a reader that goes before the output is written ends the
/// command quietly (SIGPIPE, as other Unix tools), not with a panic about a broken pipe.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let n = Node::start("127.77.99.1");
    n.init();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["-H", &n.host(), "network", "ls"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}
