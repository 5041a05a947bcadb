//! Test harness: real `swarmnet daemon` processes, each with its own loopback address, state
//! dir and API socket, killed when the guard drops.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_swarmnet");

/// The swarmnet binary the harness runs: [`BIN`], or a copy another user can reach when the
/// test runs again as that user ([`rerun_unprivileged`]).
pub fn bin() -> String {
    std::env::var(RERUN_BIN).unwrap_or_else(|_| BIN.to_string())
}

/// Set in a test's rerun as an unprivileged user: the swarmnet binary's copy.
const RERUN_BIN: &str = "SWARMNET_TEST_BIN";
/// The user the tests create to run things unprivileged.
pub const TEST_USER: &str = "swarmnet-ci";

/// Polls `cond` every 50 ms until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One daemon process.
pub struct Node {
    pub ip: String,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
    /// `daemon --hostname`, if given.
    pub hostname: Option<String>,
    /// Further `daemon` arguments.
    args: Vec<String>,
}

impl Node {
    /// Starts a daemon for the node at `ip` and waits for its API socket to answer.
    pub fn start(ip: &str) -> Node {
        Self::start_with_env(ip, &[])
    }

    /// Starts a daemon named `hostname` in the swarm (`daemon --hostname`).
    pub fn start_as(ip: &str, hostname: &str) -> Node {
        Self::start_full(ip, &[], Some(hostname))
    }

    /// Starts a daemon with extra environment variables.
    pub fn start_with_env(ip: &str, env: &[(&str, &str)]) -> Node {
        Self::start_full(ip, env, None)
    }

    /// Starts a daemon named `hostname` with further `daemon` arguments.
    pub fn start_with_args(ip: &str, hostname: &str, args: &[&str]) -> Node {
        let mut node = Self::unstarted(ip, &[], Some(hostname));
        node.args = args.iter().map(|a| a.to_string()).collect();
        node.spawn();
        node
    }

    fn start_full(ip: &str, env: &[(&str, &str)], hostname: Option<&str>) -> Node {
        let mut node = Self::unstarted(ip, env, hostname);
        node.spawn();
        node
    }

    fn unstarted(ip: &str, env: &[(&str, &str)], hostname: Option<&str>) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("api.sock");
        Node {
            ip: ip.to_string(),
            dir,
            socket,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hostname: hostname.map(str::to_string),
            args: Vec::new(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Cluster address of this node.
    pub fn addr(&self) -> String {
        format!("{}:2377", self.ip)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).expect("log file");
        let child = Command::new(bin())
            .args(["-H", &self.host(), "daemon", "--state-dir"])
            .arg(self.state_dir())
            .args(
                self.hostname
                    .iter()
                    .flat_map(|h| ["--hostname", h.as_str()]),
            )
            .args(&self.args)
            .env("SWARMNET_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn swarmnet daemon");
        self.child = Some(child);
        let socket = self.socket.clone();
        assert!(
            wait_until(Duration::from_secs(20), || {
                std::os::unix::net::UnixStream::connect(&socket).is_ok()
            }),
            "daemon for {} did not open its socket; log:\n{}",
            self.ip,
            self.log()
        );
    }

    /// Process ID of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory of the daemon in KiB (VmRSS of /proc/PID/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same state dir and socket.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs the CLI against this node.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(["-H", &self.host()])
            .args(args)
            .output()
            .expect("run swarmnet")
    }

    /// Runs the CLI and returns stdout, failing the test if the command failed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`swarmnet {}` on {} failed: {}\ndaemon log:\n{}",
            args.join(" "),
            self.ip,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI, expects failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`swarmnet {}` on {} should have failed; stdout: {}",
            args.join(" "),
            self.ip,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `swarm init` on this node's address; returns stdout.
    pub fn init(&self) -> String {
        self.ok(&["swarm", "init", "--advertise-addr", &self.ip])
    }

    pub fn token(&self, role: &str) -> String {
        self.ok(&["swarm", "join-token", "-q", role])
            .trim()
            .to_string()
    }

    /// Joins the swarm through `manager` with `token`.
    pub fn join(&self, token: &str, manager: &Node) -> Output {
        self.run(&[
            "swarm",
            "join",
            "--token",
            token,
            "--advertise-addr",
            &self.ip,
            &manager.addr(),
        ])
    }

    /// This node's ID (from the daemon's own view).
    pub fn id(&self) -> String {
        self.info().node_id.expect("node in a swarm")
    }

    /// This node's own view (role, managers, keys, Raft).
    pub fn info(&self) -> swarmnet::api::LocalInfo {
        local_info(&self.socket).expect("info")
    }

    /// `node ls` rows as (id without `*`, whole line).
    pub fn node_lines(&self) -> Vec<String> {
        self.ok(&["node", "ls"])
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    }

    /// The `node ls` line of node `id`.
    pub fn node_line(&self, id: &str) -> Option<String> {
        self.node_lines().into_iter().find(|l| l.starts_with(id))
    }

    /// The VIP of `service` on `network` as `service inspect` shows it.
    pub fn service_vip(&self, service: &str, network: &str) -> String {
        let net: serde_json::Value =
            serde_json::from_str(&self.ok(&["network", "inspect", network])).unwrap();
        let net_id = net[0]["Id"].as_str().unwrap().to_string();
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["service", "inspect", service])).unwrap();
        v[0]["Endpoint"]["VirtualIPs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["NetworkID"] == net_id.as_str())
            .and_then(|x| x["Addr"].as_str())
            .map(|a| a.split('/').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no VIP on {network}: {v}"))
    }
}

impl Drop for Node {
    /// Stops the daemon as a user would (SIGTERM), so that it removes what it made (its
    /// tasks' network namespaces, TAPs): a SIGKILL here left them behind after every test.
    /// SIGKILL only if it has not ended within 10 s. (`kill` stays a SIGKILL: a crash.)
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let ended = wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !ended {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The daemon's own view of its node (`GET /swarmnet/info`), from the test process.
pub fn local_info(
    socket: &Path,
) -> Result<swarmnet::api::LocalInfo, swarmnet::api::client::ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(swarmnet::api::client::Client::new(socket).local_info())
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Three managers on `NET.1`-`NET.3` (a /24 of the loopback range, e.g. "127.77.40"): init on
/// the first, two manager joins, and every one seeing the three voters.
pub fn three_managers(net: &str) -> (Node, Node, Node) {
    let n1 = Node::start(&format!("{net}.1"));
    let n2 = Node::start(&format!("{net}.2"));
    let n3 = Node::start(&format!("{net}.3"));
    form_three(n1, n2, n3)
}

/// Three managers as [`three_managers`], named `node-1` to `node-3` in the swarm.
pub fn three_named_managers(net: &str) -> (Node, Node, Node) {
    let n1 = Node::start_as(&format!("{net}.1"), "node-1");
    let n2 = Node::start_as(&format!("{net}.2"), "node-2");
    let n3 = Node::start_as(&format!("{net}.3"), "node-3");
    form_three(n1, n2, n3)
}

/// Three managers as [`three_named_managers`], each daemon also given `args(its address)`.
pub fn three_named_managers_with(
    net: &str,
    args: impl Fn(&str) -> Vec<String>,
) -> (Node, Node, Node) {
    let start = |i: u8| {
        let ip = format!("{net}.{i}");
        let a = args(&ip);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Node::start_with_args(&ip, &format!("node-{i}"), &a)
    };
    form_three(start(1), start(2), start(3))
}

fn form_three(n1: Node, n2: Node, n3: Node) -> (Node, Node, Node) {
    n1.init();
    let token = n1.token("manager");
    for n in [&n2, &n3] {
        let out = n.join(&token, &n1);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for n in [&n1, &n2, &n3] {
        assert!(
            wait_until(Duration::from_secs(20), || n.info().raft_voters == 3),
            "{} never saw 3 voters: {:?}\n{}",
            n.ip,
            n.info(),
            n.log()
        );
    }
    (n1, n2, n3)
}

/// A user without privileges, for running swarmnet as one.
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

fn id_of(flag: &str, name: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, name]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The effective user ID of the test.
pub fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// As root: [`TEST_USER`], created if missing (a system user, no home), or `nobody` where
/// useradd is missing. `None` when the test does not run as root (it is unprivileged already).
pub fn unprivileged_user() -> Option<User> {
    static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if euid() != 0 {
        return None;
    }
    let _one_at_a_time = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    if id_of("-u", TEST_USER).is_none() {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ])
            .output();
    }
    let name = if id_of("-u", TEST_USER).is_some() {
        TEST_USER
    } else {
        println!("useradd is not available: using nobody as the unprivileged user");
        "nobody"
    };
    let uid = id_of("-u", name).expect("the unprivileged user has a uid");
    let gid = id_of("-g", name).expect("the unprivileged user has a gid");
    assert_ne!(uid, 0, "{name} is root");
    Some(User {
        uid,
        gid,
        name: name.to_string(),
    })
}

/// A directory `user` owns (mode 0755, so the copies in it can be run), removed on drop.
pub fn dir_for(user: &User) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
    dir
}

/// Whether this process is a test's rerun as an unprivileged user.
pub fn is_rerun() -> bool {
    std::env::var_os(RERUN_BIN).is_some()
}

/// Runs test `name` of this test binary again, as an unprivileged user: the daemons it starts,
/// the CLIs it runs (swarmnet's, the docker CLI, docker-py) all run as that user. Copies of the
/// test binary and of swarmnet go to a directory the user owns. Fails if the rerun fails (its
/// output is printed); skips, saying so, when the test does not run as root (it ran unprivileged
/// already). The test and its rerun use the same addresses: each takes [`exclusive`] first.
pub fn rerun_unprivileged(name: &str) {
    if is_rerun() {
        return;
    }
    let Some(user) = unprivileged_user() else {
        println!(
            "SKIPPED the rerun of {name} as an unprivileged user: the tests run as uid {} already",
            euid()
        );
        return;
    };
    let dir = dir_for(&user);
    let test_exe = dir.path().join("tests");
    std::fs::copy(std::env::current_exe().unwrap(), &test_exe).expect("copy the test binary");
    let swarmnet = dir.path().join("swarmnet");
    std::fs::copy(BIN, &swarmnet).expect("copy swarmnet");
    use std::os::unix::process::CommandExt;
    let out = Command::new(&test_exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir.path())
        .env("USER", &user.name)
        .env(RERUN_BIN, &swarmnet)
        .current_dir(dir.path())
        .uid(user.uid)
        .gid(user.gid)
        .output()
        .expect("rerun the test");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--- {name} as {} (uid {}) ---\n{text}", user.name, user.uid);
    assert!(out.status.success(), "{name} failed as {}", user.name);
    assert!(
        text.contains(&format!("test {name} ... ok")) && text.contains("1 passed"),
        "{name} did not run as {}",
        user.name
    );
}

/// An exclusive lock named `name` (a file in /tmp any user may lock) held until dropped: a test
/// and its rerun as another user use the same addresses, so they take turns.
pub fn exclusive(name: &str) -> std::fs::File {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let path = std::path::Path::new("/tmp").join(format!("swarmnet-test-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o666)
        .open(&path)
        .or_else(|_| std::fs::File::open(&path))
        .expect("open the test's lock file");
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666));
    // SAFETY: flock on a descriptor this function owns.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock {}", path.display());
    file
}

/// Major version of the docker CLI `bin` (20 for Debian 12's docker.io, 28 for Docker's own
/// packages today): some of what the CLI itself prints differs between them.
pub fn cli_major(bin: &str) -> u32 {
    let out = Command::new(bin)
        .args(["version", "--format", "{{.Client.Version}}"])
        .env_remove("DOCKER_HOST")
        .output()
        .expect("docker version");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}
