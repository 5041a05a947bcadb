//! `swarmnet demo`: a whole swarm with a replicated service on loopback addresses, as any user,
//! in one command. It starts one daemon per node as a child process (127.0.0.1, 127.0.0.2, ...,
//! each with its own state directory and socket under one temporary directory), forms the swarm,
//! creates an overlay network and a published `swarmnet/whoami` service, and shows, with the real
//! commands and their real output, the routing mesh, the embedded DNS, the VIP balancer and a
//! node failing. Every task is virtual (smoltcp inside the data path) and the underlay is UDP on
//! loopback, so nothing needs a privilege. Everything it started is stopped and removed at the
//! end, on failure and on Ctrl-C; `--keep` leaves the swarm running and `--down` stops it later.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::network::filters_query;
use crate::api::client::Client;
use crate::api::owner::euid;
use crate::api::task::Task;

/// `swarmnet demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Nodes in the swarm, 1-9: daemons on 127.0.0.1, 127.0.0.2, ...
    #[arg(long, default_value_t = 3, value_parser = nodes_in_range)]
    pub nodes: u8,
    /// Leave the swarm running at the end and print how to reach each node
    /// (`swarmnet demo --down` stops it).
    #[arg(long, conflicts_with = "down")]
    pub keep: bool,
    /// Encrypt the overlay network (`--opt encrypted`: ESP with AES-GCM, in UDP on loopback).
    #[arg(long, conflicts_with = "down")]
    pub encrypted: bool,
    /// Stop the swarms that `swarmnet demo --keep` left running for this user, and remove their files.
    #[arg(long)]
    pub down: bool,
}

fn nodes_in_range(s: &str) -> Result<u8, String> {
    super::number_in(s, 1, MAX_NODES as u64).map(|n| n as u8)
}

/// Most nodes a demo starts: one loopback address each, from 127.0.0.1.
const MAX_NODES: u8 = 9;
/// What the demo's directories are called under the temporary directory.
const DIR_PREFIX: &str = "swarmnet-demo-";
/// The service the demo publishes, its replicas and the port it asks for.
const SERVICE: &str = "whoami";
const REPLICAS: usize = 3;
const NETWORK: &str = "demo-net";
/// Ports the demo asks for first; a taken one is replaced by the next free one.
const CLUSTER_PORT: u16 = 2377;
const DATA_PORT: u16 = 4789;
const GOSSIP_PORT: u16 = crate::io::gossip::GOSSIP_PORT;
const PUBLISHED_PORT: u16 = 8080;
/// How far the demo looks past a taken port.
const PORT_TRIES: u16 = 50;
/// Longest wait for one step (daemons answering, tasks running, a node seen down).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long stopped daemons get to exit before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs `swarmnet demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.down {
        return down();
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot handle the stop signals")?;
    }
    clean_stale();
    let mut demo = Demo::new(&args, stop)?;
    let outcome = demo.show();
    match outcome {
        Ok(()) if args.keep => {
            demo.keep()?;
            Ok(())
        }
        Ok(()) => {
            demo.shut_down();
            Ok(())
        }
        Err(err) => {
            if !demo.interrupted() {
                demo.print_logs();
            }
            demo.shut_down();
            if demo.interrupted() {
                bail!("interrupted: everything the demo started is stopped and removed");
            }
            Err(err)
        }
    }
}

/// One node of the demo: its daemon and where it answers.
struct DemoNode {
    name: String,
    ip: Ipv4Addr,
    socket: PathBuf,
    child: Option<Child>,
}

impl DemoNode {
    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// The ports the swarm uses, the same on every node's address.
struct Ports {
    cluster: u16,
    data: u16,
    published: u16,
    gossip: u16,
}

struct Demo {
    dir: PathBuf,
    nodes: Vec<DemoNode>,
    ports: Ports,
    encrypted: bool,
    keep: bool,
    stop: Arc<AtomicBool>,
    exe: PathBuf,
    runtime: tokio::runtime::Runtime,
    /// Whether progress is drawn as a spinner (a terminal) or written as lines.
    tty: bool,
    /// The node `kill -9` stopped, if that step ran.
    killed: Option<usize>,
    /// Set once the directory is removed (or kept), so that drop does nothing more.
    done: bool,
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A panic or an early return must not leave daemons behind.
        if !self.done {
            self.shut_down();
        }
    }
}

impl Demo {
    fn new(args: &DemoArgs, stop: Arc<AtomicBool>) -> anyhow::Result<Demo> {
        let exe = std::env::current_exe().context("cannot find the swarmnet binary")?;
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        // A Unix socket's path holds at most 107 bytes.
        let longest = dir
            .join(format!("node-{}.sock", args.nodes))
            .as_os_str()
            .len();
        if longest > 107 {
            bail!(
                "the temporary directory {} is too deep for the nodes' sockets ({longest} bytes, at most 107): set TMPDIR to a shorter path",
                std::env::temp_dir().display()
            );
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("demo.pid"), std::process::id().to_string())
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let nodes = (1..=args.nodes)
            .map(|i| DemoNode {
                name: format!("node-{i}"),
                ip: Ipv4Addr::new(127, 0, 0, i),
                socket: dir.join(format!("node-{i}.sock")),
                child: None,
            })
            .collect();
        Ok(Demo {
            dir,
            nodes,
            ports: Ports {
                cluster: CLUSTER_PORT,
                data: DATA_PORT,
                published: PUBLISHED_PORT,
                gossip: GOSSIP_PORT,
            },
            encrypted: args.encrypted,
            keep: args.keep,
            stop,
            exe,
            runtime,
            tty: std::io::stderr().is_terminal(),
            killed: None,
            done: false,
        })
    }

    fn interrupted(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn check_interrupted(&self) -> anyhow::Result<()> {
        if self.interrupted() {
            bail!("interrupted");
        }
        Ok(())
    }

    /// Every step, in order.
    fn show(&mut self) -> anyhow::Result<()> {
        let n = self.nodes.len();
        let steps = if n > 1 { 9 } else { 8 };
        println!(
            "swarmnet demo: a {n}-node swarm on {}, as {}, files in {}",
            self.addresses(),
            user_name(),
            self.dir.display()
        );
        println!(
            "Every task is a virtual task inside its node's data path and the underlay is UDP on \
             loopback: nothing here needs root."
        );
        let mut step = Step::new(steps);

        step.title("Ports");
        self.choose_ports()?;
        step.title(&format!(
            "Starting {n} daemon{}",
            if n == 1 { "" } else { "s" }
        ));
        self.start_daemons()?;
        step.title("Forming the swarm");
        self.form_swarm()?;
        step.title(if self.encrypted {
            "An encrypted overlay network and a replicated, published service"
        } else {
            "An overlay network and a replicated, published service"
        });
        self.create_service()?;
        step.title(&format!(
            "The routing mesh: port {} on every node",
            self.ports.published
        ));
        let all: Vec<usize> = (0..n).collect();
        self.mesh(&all, true)?;
        step.title("DNS: what a task's resolver (its node) answers");
        self.dns()?;
        step.title("The VIP spreading a client's requests over the tasks");
        self.vip()?;
        if n > 1 {
            step.title(&format!("A node fails: kill -9 {}", self.nodes[n - 1].name));
            self.fail_node()?;
        }
        step.title("Summary");
        self.summary()?;
        Ok(())
    }

    fn addresses(&self) -> String {
        match self.nodes.len() {
            1 => "127.0.0.1".into(),
            n => format!("127.0.0.1-127.0.0.{n}"),
        }
    }

    /// The swarm's ports: the usual ones unless one is taken on a node's address.
    fn choose_ports(&mut self) -> anyhow::Result<()> {
        let ips: Vec<Ipv4Addr> = self.nodes.iter().map(|n| n.ip).collect();
        let addresses = self.addresses();
        let pick = |want: u16, what: &str, free: &dyn Fn(Ipv4Addr, u16) -> bool, not: &[u16]| {
            let mut first_taken = None;
            for port in want..=want.saturating_add(PORT_TRIES) {
                let taken = ips.iter().find(|ip| !free(**ip, port)).copied();
                if taken.is_none() && !not.contains(&port) {
                    match first_taken {
                        Some(ip) => println!(
                            "  {what}: port {want} is taken on {ip}, so the demo uses {port}"
                        ),
                        None => println!("  {what}: {port}"),
                    }
                    return Ok(port);
                }
                if port == want {
                    first_taken = taken;
                }
            }
            bail!(
                "{what}: ports {want}-{} are all taken on {addresses}: free one and run the demo again",
                want.saturating_add(PORT_TRIES)
            )
        };
        self.ports.cluster = pick(CLUSTER_PORT, "cluster (TCP, mutual TLS)", &tcp_free, &[])?;
        self.ports.data = pick(DATA_PORT, "data path (UDP, VXLAN)", &udp_free, &[])?;
        self.ports.published = pick(
            PUBLISHED_PORT,
            "published (TCP, the routing mesh)",
            &tcp_free,
            &[self.ports.cluster],
        )?;
        let both_free = |ip: Ipv4Addr, port: u16| tcp_free(ip, port) && udp_free(ip, port);
        self.ports.gossip = pick(
            GOSSIP_PORT,
            "gossip (UDP and TCP, sealed)",
            &both_free,
            &[self.ports.cluster, self.ports.published],
        )?;
        Ok(())
    }

    fn start_daemons(&mut self) -> anyhow::Result<()> {
        let mut pids = String::new();
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let state = self.dir.join(&node.name);
            let log = std::fs::File::create(self.dir.join(format!("{}.log", node.name)))
                .context("cannot create a daemon's log file")?;
            let host = node.host();
            let publish = node.ip.to_string();
            let gossip: Vec<String> = if self.ports.gossip != GOSSIP_PORT {
                vec!["--gossip-port".into(), self.ports.gossip.to_string()]
            } else {
                Vec::new()
            };
            println!(
                "$ swarmnet -H {host} daemon --state-dir {} --hostname {} --publish-addr {publish}{} &",
                state.display(),
                node.name,
                gossip.iter().map(|a| format!(" {a}")).collect::<String>()
            );
            let mut cmd = Command::new(&self.exe);
            cmd.args(["-H", &host, "daemon", "--state-dir"])
                .arg(&state)
                .args(["--hostname", &node.name, "--publish-addr", &publish])
                .args(&gossip)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                // Its own process group: Ctrl-C reaches the demo, which stops the daemons
                // in order, and not the daemons directly.
                .process_group(0);
            if !self.keep {
                // Stopped with the demo even if the demo is killed (SIGKILL gives it no
                // chance to stop them itself).
                crate::io::child::end_with_parent(&mut cmd, libc::SIGTERM);
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot start {}", self.exe.display()))?;
            pids.push_str(&format!("{} {}\n", child.id(), node.name));
            self.nodes[i].child = Some(child);
        }
        std::fs::write(self.dir.join("daemons"), pids).context("cannot record the daemons")?;
        let clients: Vec<Client> = self
            .nodes
            .iter()
            .map(|n| Client::new(n.socket.clone()))
            .collect();
        self.wait_for("daemons answering on their sockets", |demo| {
            let up = clients
                .iter()
                .filter(|c| demo.runtime.block_on(c.ping()).is_ok())
                .count();
            Ok((up == clients.len())
                .then_some(())
                .ok_or(format!("{up}/{}", clients.len())))
        })?;
        Ok(())
    }

    fn form_swarm(&mut self) -> anyhow::Result<()> {
        println!(
            "$ export SWARMNET_HOST={}   # the commands below talk to node-1 unless they say -H",
            self.nodes[0].host()
        );
        let first = self.nodes[0].ip;
        let mut init = vec![
            "swarm".to_string(),
            "init".into(),
            "--advertise-addr".into(),
            first.to_string(),
        ];
        if self.ports.cluster != CLUSTER_PORT {
            init.push("--listen-addr".into());
            init.push(format!("{first}:{}", self.ports.cluster));
        }
        if self.ports.data != DATA_PORT {
            init.push("--data-path-port".into());
            init.push(self.ports.data.to_string());
        }
        self.show_cli(0, &init)?;
        let n = self.nodes.len();
        // One manager, or three from five nodes on (an odd number keeps a Raft majority).
        let managers = if n >= 5 { 3 } else { 1 };
        let manager_token = self.capture(0, &["swarm", "join-token", "-q", "manager"])?;
        let worker_token = self.capture(0, &["swarm", "join-token", "-q", "worker"])?;
        for i in 1..n {
            let token = if i < managers {
                &manager_token
            } else {
                &worker_token
            };
            let ip = self.nodes[i].ip;
            let mut join = vec![
                "swarm".to_string(),
                "join".into(),
                "--advertise-addr".into(),
                ip.to_string(),
            ];
            if self.ports.cluster != CLUSTER_PORT {
                join.push("--listen-addr".into());
                join.push(format!("{ip}:{}", self.ports.cluster));
            }
            join.push("--token".into());
            join.push(token.trim().to_string());
            join.push(format!("{first}:{}", self.ports.cluster));
            self.show_cli(i, &join)?;
        }
        self.wait_for("every node ready", |demo| {
            let ready = demo
                .nodes_seen()?
                .into_iter()
                .filter(|n| n.state == "ready")
                .count();
            Ok((ready == n)
                .then_some(())
                .ok_or(format!("{ready}/{n} ready")))
        })?;
        self.show_cli(0, &["node", "ls"])?;
        Ok(())
    }

    fn create_service(&mut self) -> anyhow::Result<()> {
        let mut net = vec!["network", "create", "-d", "overlay"];
        if self.encrypted {
            net.extend(["--opt", "encrypted"]);
        }
        net.push(NETWORK);
        self.show_cli(0, &net)?;
        let publish = format!("{}:80", self.ports.published);
        let replicas = REPLICAS.to_string();
        self.show_cli(
            0,
            &[
                "service",
                "create",
                "--name",
                SERVICE,
                "--replicas",
                &replicas,
                "--network",
                NETWORK,
                "-p",
                &publish,
                "swarmnet/whoami",
            ],
        )?;
        self.wait_running(SERVICE, REPLICAS, None)?;
        self.show_cli(0, &["service", "ps", SERVICE])?;
        // The network as node-1 sees it, trimmed to what the demo is about.
        let text = self.capture(0, &["network", "inspect", NETWORK])?;
        println!("$ swarmnet network inspect {NETWORK}   # trimmed");
        let list: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("network inspect printed no JSON: {text}"))?;
        let net = &list[0];
        let mut shown = serde_json::Map::new();
        for key in [
            "Name",
            "Id",
            "Scope",
            "Driver",
            "IPAM",
            "Options",
            "Containers",
            "Peers",
        ] {
            let mut v = net[key].clone();
            if key == "IPAM" {
                v = serde_json::json!({ "Config": v["Config"].clone() });
            }
            shown.insert(key.into(), v);
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(shown)).unwrap_or_default()
        );
        Ok(())
    }

    /// GETs `/` on the published port of each of `nodes` until each node answered and every
    /// running task of the service answered through some node; prints who answered.
    fn mesh(&mut self, nodes: &[usize], show_one: bool) -> anyhow::Result<()> {
        self.wait_balancers(nodes)?;
        let port = self.ports.published;
        if show_one {
            let ip = self.nodes[nodes[0]].ip;
            println!("$ curl -s http://{ip}:{port}/");
            let page = self.get(ip, port)?;
            print!("{page}");
        }
        let want = REPLICAS.min(3);
        // node -> task -> (its node, count)
        let mut seen: BTreeMap<usize, BTreeMap<String, (String, usize)>> = BTreeMap::new();
        let mut failures: Vec<String> = Vec::new();
        let started = Instant::now();
        let mut rounds = 0;
        loop {
            self.check_interrupted()?;
            for &i in nodes {
                let ip = self.nodes[i].ip;
                match self.get(ip, port) {
                    Ok(page) => {
                        let task = field(&page, "Hostname").unwrap_or("?").to_string();
                        let node = field(&page, "Node").unwrap_or("?").to_string();
                        seen.entry(i)
                            .or_default()
                            .entry(task)
                            .or_insert((node, 0))
                            .1 += 1;
                    }
                    Err(e) => failures.push(format!("{ip}:{port}: {e:#}")),
                }
            }
            rounds += 1;
            let tasks: BTreeSet<&String> = seen.values().flat_map(|m| m.keys()).collect();
            let done = seen.len() == nodes.len() && tasks.len() >= want && rounds >= 4;
            if done || rounds >= 30 || started.elapsed() > STEP_TIMEOUT {
                break;
            }
        }
        for &i in nodes {
            let ip = self.nodes[i].ip;
            let Some(tasks) = seen.get(&i) else {
                continue;
            };
            let total: usize = tasks.values().map(|(_, c)| c).sum();
            println!(
                "  http://{ip}:{port}/ ({}): {total} requests",
                self.nodes[i].name
            );
            for (task, (node, count)) in tasks {
                println!("      {count:>2} answered by {task} on {node}");
            }
        }
        for f in failures.iter().take(5) {
            println!("  failed: {f}");
        }
        let tasks: BTreeSet<&String> = seen.values().flat_map(|m| m.keys()).collect();
        let silent: Vec<&str> = nodes
            .iter()
            .filter(|i| !seen.contains_key(i))
            .map(|&i| self.nodes[i].name.as_str())
            .collect();
        if !silent.is_empty() {
            bail!("the routing mesh did not answer on {}", silent.join(", "));
        }
        if tasks.len() < want {
            bail!(
                "the routing mesh reached {} of the {want} tasks: {}",
                tasks.len(),
                tasks
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!(
            "  every node answered on {port}, and {} distinct tasks answered through the routing mesh",
            tasks.len()
        );
        Ok(())
    }

    fn dns(&mut self) -> anyhow::Result<()> {
        let tasks_name = format!("tasks.{SERVICE}");
        self.show_cli(
            0,
            &[
                "service",
                "create",
                "-d",
                "--name",
                "lookup",
                "--network",
                NETWORK,
                "swarmnet/lookup",
                SERVICE,
                &tasks_name,
            ],
        )?;
        let vip_head = format!("lookup {SERVICE}: ");
        let tasks_head = format!("lookup {tasks_name}: ");
        self.wait_for("the lookup task's first answers", |demo| {
            let logs = demo.capture(0, &["service", "logs", "lookup"])?;
            let has = |head: &str| logs.lines().any(|l| l.contains(head));
            Ok((has(&vip_head) && has(&tasks_head))
                .then_some(())
                .ok_or("waiting".to_string()))
        })?;
        self.show_cli(0, &["service", "logs", "lookup"])?;
        println!(
            "  {SERVICE} is the service's VIP on {NETWORK}; {tasks_name} is every running task (try --endpoint-mode dnsrr)"
        );
        Ok(())
    }

    fn vip(&mut self) -> anyhow::Result<()> {
        let url = format!("http://{SERVICE}/");
        self.show_cli(
            0,
            &[
                "service",
                "create",
                "-d",
                "--mode",
                "global",
                "--name",
                "client",
                "--network",
                NETWORK,
                "swarmnet/fetch",
                &url,
            ],
        )?;
        let want = 4 * self.nodes.len().max(3);
        let mut lines = Vec::new();
        self.wait_for("the clients' requests", |demo| {
            let logs = demo.capture(0, &["service", "logs", "client"])?;
            lines = logs
                .lines()
                .filter(|l| l.contains(": 200,"))
                .map(str::to_string)
                .collect();
            Ok((lines.len() >= want)
                .then_some(())
                .ok_or(format!("{}/{want}", lines.len())))
        })?;
        println!("$ swarmnet service logs client | tail -n 4");
        for l in lines.iter().rev().take(4).rev() {
            println!("{l}");
        }
        let mut by_task: BTreeMap<String, usize> = BTreeMap::new();
        let mut vips = BTreeSet::new();
        for l in &lines {
            if let Some(task) = l.split(", from ").nth(1) {
                *by_task.entry(short_task(task)).or_default() += 1;
            }
            if let Some(addr) = l.split(" (").nth(1).and_then(|r| r.split(')').next()) {
                vips.insert(addr.to_string());
            }
        }
        println!(
            "  {} requests from {} clients to http://{SERVICE}/ ({}), spread by the VIP: {}",
            lines.len(),
            self.nodes.len(),
            vips.into_iter().collect::<Vec<_>>().join(", "),
            by_task
                .iter()
                .map(|(t, c)| format!("{t} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(())
    }

    fn fail_node(&mut self) -> anyhow::Result<()> {
        let victim = self.nodes.len() - 1;
        let name = self.nodes[victim].name.clone();
        let Some(mut child) = self.nodes[victim].child.take() else {
            bail!("{name}'s daemon is not running");
        };
        println!("$ kill -9 {}   # {name}'s daemon", child.id());
        let _ = child.kill();
        let _ = child.wait();
        self.killed = Some(victim);
        let started = Instant::now();
        self.wait_for(&format!("the managers to see {name} down"), |demo| {
            let down = demo
                .nodes_seen()?
                .into_iter()
                .any(|n| n.hostname == name && n.state == "down");
            Ok(down.then_some(()).ok_or("no heartbeat yet".to_string()))
        })?;
        println!(
            "  {name} is down {:.1} s after it was killed (no heartbeat)",
            started.elapsed().as_secs_f64()
        );
        self.show_cli(0, &["node", "ls"])?;
        self.wait_running(SERVICE, REPLICAS, Some(&name))?;
        println!(
            "  {SERVICE}'s task on {name} runs again elsewhere {:.1} s after the kill",
            started.elapsed().as_secs_f64()
        );
        self.show_cli(0, &["service", "ps", SERVICE])?;
        let alive: Vec<usize> = (0..self.nodes.len()).filter(|&i| i != victim).collect();
        self.mesh(&alive, false)?;
        // The task that replaced the lost one has an address of its own: the lookup task
        // (or its replacement, if it ran on the lost node) reports the new set.
        let tasks_head = format!("lookup tasks.{SERVICE}: ");
        let mut lines = Vec::new();
        self.wait_for(&format!("tasks.{SERVICE} to name the new task"), |demo| {
            let logs = demo.capture(0, &["service", "logs", "lookup"])?;
            lines = logs
                .lines()
                .filter(|l| l.contains(&tasks_head))
                .map(str::to_string)
                .collect();
            let answers: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.split(&tasks_head).nth(1))
                .collect();
            let renewed = match (answers.first(), answers.last()) {
                (Some(first), Some(last)) => first != last && last.split(' ').count() == REPLICAS,
                _ => false,
            };
            Ok(renewed.then_some(()).ok_or("waiting".into()))
        })?;
        println!("$ swarmnet service logs lookup | grep tasks.{SERVICE}");
        for l in &lines {
            println!("{l}");
        }
        Ok(())
    }

    fn summary(&mut self) -> anyhow::Result<()> {
        let hostnames: BTreeMap<String, String> = self
            .nodes_seen()?
            .into_iter()
            .map(|n| (n.id, n.hostname))
            .collect();
        let services: Vec<serde_json::Value> = self.api(0, "/services")?;
        let service_names: BTreeMap<String, String> = services
            .iter()
            .filter_map(|s| {
                Some((
                    s["ID"].as_str()?.to_string(),
                    s["Spec"]["Name"].as_str()?.to_string(),
                ))
            })
            .collect();
        let route = format!(
            "/tasks{}",
            filters_query(&[("desired-state".into(), "running".into())])
        );
        let tasks: Vec<Task> = self.api(0, &route)?;
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in tasks.iter().filter(|t| t.status.state == "running") {
            let service = service_names
                .get(&t.service_id)
                .cloned()
                .unwrap_or_else(|| t.service_id.clone());
            let name = if t.slot > 0 {
                format!("{service}.{}", t.slot)
            } else {
                service
            };
            let node = hostnames
                .get(&t.node_id)
                .cloned()
                .unwrap_or_else(|| t.node_id.clone());
            by_node.entry(node).or_default().push(name);
        }
        println!("  what ran where:");
        for (i, n) in self.nodes.iter().enumerate() {
            let mut tasks = by_node.remove(&n.name).unwrap_or_default();
            tasks.sort();
            let state = if self.killed == Some(i) {
                " (killed)".to_string()
            } else {
                String::new()
            };
            println!(
                "    {:<7} {}{state}: {}",
                n.name,
                n.ip,
                if tasks.is_empty() {
                    "no task".to_string()
                } else {
                    tasks.join(", ")
                }
            );
        }
        let port = self.ports.published;
        if self.keep {
            println!("  try next:");
            println!("    export SWARMNET_HOST={}", self.nodes[0].host());
        } else {
            println!("  try next, after `swarmnet demo --keep` (the swarm stays up):");
            println!("    export SWARMNET_HOST=...   # node-1's socket, as --keep prints it");
        }
        println!("    swarmnet service scale {SERVICE}=6 && swarmnet service ps {SERVICE}");
        println!("    curl http://127.0.0.1:{port}/");
        println!("    swarmnet service update --endpoint-mode dnsrr {SERVICE}   # then: swarmnet service logs lookup");
        println!(
            "    swarmnet service backends {SERVICE}                       # node-1's balancer"
        );
        println!("    DOCKER_HOST=$SWARMNET_HOST docker service ls               # the docker CLI speaks to it too");
        Ok(())
    }

    /// Leaves the swarm running: the daemons and the directory stay, and say how to reach them.
    fn keep(&mut self) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("kept"), "").context("cannot mark the demo as kept")?;
        println!();
        println!("The swarm keeps running (--keep):");
        for (i, n) in self.nodes.iter().enumerate() {
            if self.killed == Some(i) {
                println!("  {:<7} killed by the demo", n.name);
            } else {
                println!("  {:<7} swarmnet -H {}", n.name, n.host());
            }
        }
        println!("Stop it and remove its files with: swarmnet demo --down");
        for n in &mut self.nodes {
            // Not waited for: they outlive the demo.
            n.child = None;
        }
        self.done = true;
        Ok(())
    }

    /// Stops every daemon the demo started and removes its directory.
    fn shut_down(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let mut children: Vec<Child> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.take())
            .collect();
        let count = children.len();
        for c in &children {
            // A child not reaped yet: its pid is still its own.
            crate::io::child::signal(c.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            if children.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Not println!: this may run while a panic (a closed stdout) unwinds.
        use std::io::Write as _;
        let removed = std::fs::remove_dir_all(&self.dir);
        let _ = match removed {
            Ok(()) => writeln!(
                std::io::stdout(),
                "\nStopped {count} daemon{} and removed {}.",
                if count == 1 { "" } else { "s" },
                self.dir.display()
            ),
            Err(e) => writeln!(
                std::io::stderr(),
                "cannot remove {}: {e}",
                self.dir.display()
            ),
        };
    }

    /// The end of each daemon's log, for a failed demo.
    fn print_logs(&self) {
        for n in &self.nodes {
            let log = std::fs::read_to_string(self.dir.join(format!("{}.log", n.name)))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            if lines.is_empty() {
                continue;
            }
            eprintln!("--- {}'s daemon log (last lines) ---", n.name);
            for l in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{l}");
            }
        }
    }

    /// Waits until the balancer of each of `nodes` has every running task of the service as
    /// a backend on the ingress network (a node learns of a new task with its next heartbeat).
    fn wait_balancers(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        let route = format!(
            "/tasks{}",
            filters_query(&[
                ("service".into(), SERVICE.into()),
                ("desired-state".into(), "running".into())
            ])
        );
        self.wait_for("every node's balancer to have the running tasks", |demo| {
            let tasks: Vec<Task> = demo.api(0, &route)?;
            let running: BTreeSet<String> = tasks
                .iter()
                .filter(|t| t.status.state == "running")
                .map(|t| format!("{SERVICE}.{}.{}", t.slot, t.id))
                .collect();
            let mut behind = Vec::new();
            for &i in nodes {
                let rows: Vec<crate::api::BalancerRow> = demo.api(i, "/swarmnet/balancer")?;
                let known: BTreeSet<&str> = rows
                    .iter()
                    .filter(|r| r.service == SERVICE && r.network == "ingress")
                    .map(|r| r.task.as_str())
                    .collect();
                if !running.iter().all(|t| known.contains(t.as_str())) {
                    behind.push(demo.nodes[i].name.as_str());
                }
            }
            Ok(behind
                .is_empty()
                .then_some(())
                .ok_or(format!("{} behind", behind.join(", "))))
        })
    }

    /// Waits until `service` has `count` running tasks, none on node `not_on`.
    fn wait_running(
        &mut self,
        service: &str,
        count: usize,
        not_on: Option<&str>,
    ) -> anyhow::Result<()> {
        let route = format!(
            "/tasks{}",
            filters_query(&[
                ("service".into(), service.into()),
                ("desired-state".into(), "running".into())
            ])
        );
        let not_on = not_on.map(str::to_string);
        self.wait_for(&format!("{count} {service} tasks running"), |demo| {
            let tasks: Vec<Task> = demo.api(0, &route)?;
            let skip = match &not_on {
                Some(name) => demo
                    .nodes_seen()?
                    .into_iter()
                    .find(|n| n.hostname == *name)
                    .map(|n| n.id),
                None => None,
            };
            let running = tasks
                .iter()
                .filter(|t| t.status.state == "running" && Some(&t.node_id) != skip.as_ref())
                .count();
            Ok((running >= count)
                .then_some(())
                .ok_or(format!("{running}/{count} running")))
        })
    }

    /// Polls `poll` every 200 ms until it gives `Ok(Ok(_))`, showing its progress (the `Err`
    /// text) as a spinner on a terminal, else as a line each time it changes.
    fn wait_for<T>(
        &mut self,
        what: &str,
        mut poll: impl FnMut(&mut Demo) -> anyhow::Result<Result<T, String>>,
    ) -> anyhow::Result<T> {
        let started = Instant::now();
        let spinner = self.tty.then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        });
        let mut last = String::new();
        let outcome = loop {
            if self.interrupted() {
                break Err(anyhow::anyhow!("interrupted"));
            }
            if let Some(err) = self.dead_daemon() {
                break Err(err);
            }
            match poll(self) {
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(progress)) => {
                    if progress != last {
                        match &spinner {
                            Some(pb) => pb.set_message(format!("waiting for {what}: {progress}")),
                            None => println!("  waiting for {what}: {progress}"),
                        }
                        last = progress;
                    }
                }
                // A daemon may not answer while it starts or elects: keep trying.
                Err(e) => {
                    let text = format!("{e:#}");
                    if text != last {
                        if let Some(pb) = &spinner {
                            pb.set_message(format!("waiting for {what}: {text}"));
                        }
                        last = text;
                    }
                }
            }
            if started.elapsed() > STEP_TIMEOUT {
                break Err(anyhow::anyhow!(
                    "gave up waiting for {what} after {}s: {last}",
                    STEP_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if let Some(pb) = spinner {
            pb.finish_and_clear();
        }
        if outcome.is_ok() {
            println!("  {what}: done in {:.1} s", started.elapsed().as_secs_f64());
        }
        outcome
    }

    /// An error naming a daemon that exited though the demo did not stop it.
    fn dead_daemon(&mut self) -> Option<anyhow::Error> {
        for n in &mut self.nodes {
            if let Some(c) = &mut n.child {
                if let Ok(Some(status)) = c.try_wait() {
                    n.child = None;
                    return Some(anyhow::anyhow!("{}'s daemon exited ({status})", n.name));
                }
            }
        }
        None
    }

    /// The swarm's nodes as node-1 sees them (`GET /nodes`, Docker's JSON).
    fn nodes_seen(&self) -> anyhow::Result<Vec<SeenNode>> {
        let list: Vec<serde_json::Value> = self.api(0, "/nodes")?;
        Ok(list
            .iter()
            .map(|n| SeenNode {
                id: n["ID"].as_str().unwrap_or_default().to_string(),
                hostname: n["Description"]["Hostname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                state: n["Status"]["State"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect())
    }

    /// A Docker route of node `i`, decoded.
    fn api<T: serde::de::DeserializeOwned>(&self, i: usize, route: &str) -> anyhow::Result<T> {
        let client = Client::new(self.nodes[i].socket.clone());
        Ok(self.runtime.block_on(client.get(route))?)
    }

    /// The command line a user would type to run `args` on node `i`.
    fn command_line(&self, i: usize, args: &[impl AsRef<str>]) -> String {
        let mut line = String::from("$ swarmnet");
        if i != 0 {
            line.push_str(&format!(" -H {}", self.nodes[i].host()));
        }
        for a in args {
            let a = a.as_ref();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$&|;<>*?".contains(c))
            {
                line.push_str(&format!(" '{a}'"));
            } else {
                line.push(' ');
                line.push_str(a);
            }
        }
        line
    }

    /// Runs the CLI on node `i`, showing the command and its output as it comes.
    fn show_cli(&mut self, i: usize, args: &[impl AsRef<str>]) -> anyhow::Result<()> {
        self.check_interrupted()?;
        println!("{}", self.command_line(i, args));
        let status = Command::new(&self.exe)
            .args(["-H", &self.nodes[i].host()])
            .args(args.iter().map(|a| a.as_ref()))
            .stdin(Stdio::null())
            .status()
            .context("cannot run the swarmnet CLI")?;
        self.check_interrupted()?;
        if !status.success() {
            bail!("`{}` failed ({status})", &self.command_line(i, args)[2..]);
        }
        Ok(())
    }

    /// Runs the CLI on node `i` and returns what it printed.
    fn capture(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.exe)
            .args(["-H", &self.nodes[i].host()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run the swarmnet CLI")?;
        if !out.status.success() {
            bail!(
                "`{}` failed: {}",
                &self.command_line(i, args)[2..],
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `GET /` on `ip:port` over HTTP/1.1; the body.
    fn get(&self, ip: Ipv4Addr, port: u16) -> anyhow::Result<String> {
        self.runtime.block_on(async {
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                let stream = tokio::net::TcpStream::connect((ip, port)).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                let driver = tokio::spawn(async move {
                    let _ = conn.await;
                });
                let request = hyper::Request::get("/")
                    .header(hyper::header::HOST, format!("{ip}:{port}"))
                    .header(hyper::header::USER_AGENT, "swarmnet-demo")
                    .body(Empty::<Bytes>::new())?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let body = Limited::new(response.into_body(), 64 * 1024)
                    .collect()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .to_bytes();
                driver.abort();
                if !status.is_success() {
                    bail!("HTTP {status}");
                }
                Ok::<_, anyhow::Error>(String::from_utf8_lossy(&body).into_owned())
            })
            .await;
            answer.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 5 s")))
        })
    }
}

/// A node as `GET /nodes` shows it.
struct SeenNode {
    id: String,
    hostname: String,
    /// `ready`, `down`, ...
    state: String,
}

/// Step headings: `[2/9] Forming the swarm`.
struct Step {
    at: usize,
    of: usize,
}

impl Step {
    fn new(of: usize) -> Step {
        Step { at: 0, of }
    }

    fn title(&mut self, text: &str) {
        self.at += 1;
        println!();
        if std::io::stdout().is_terminal() {
            println!("\x1b[1m[{}/{}] {text}\x1b[0m", self.at, self.of);
        } else {
            println!("[{}/{}] {text}", self.at, self.of);
        }
    }
}

/// The value of a `Name: value` line of a whoami page.
fn field<'a>(page: &'a str, name: &str) -> Option<&'a str> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// `whoami.2.<id>` as `whoami.2`.
fn short_task(task: &str) -> String {
    task.split('.').take(2).collect::<Vec<_>>().join(".")
}

fn tcp_free(ip: Ipv4Addr, port: u16) -> bool {
    TcpListener::bind((ip, port)).is_ok()
}

fn udp_free(ip: Ipv4Addr, port: u16) -> bool {
    UdpSocket::bind((ip, port)).is_ok()
}

fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {}", euid()))
}

/// This user's demo directories under the temporary directory.
fn demo_dirs() -> Vec<PathBuf> {
    let me = euid();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(DIR_PREFIX))
        .map(|e| e.path())
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == me))
        .collect()
}

/// Whether process `pid` runs with `needle` on its command line.
fn runs_with(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
}

/// The daemons recorded in demo directory `dir` that still run from it.
fn recorded_daemons(dir: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(dir.join("daemons")).unwrap_or_default();
    let needle = dir.to_string_lossy().into_owned();
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .filter(|&pid| runs_with(pid, &needle))
        .collect()
}

/// Stops processes `pids` (SIGTERM, then SIGKILL after the grace time) and waits for them.
fn stop_pids(pids: &[u32]) {
    for &pid in pids {
        crate::io::child::signal(pid, libc::SIGTERM);
    }
    let alive = |pid: &u32| Path::new(&format!("/proc/{pid}")).exists();
    let deadline = Instant::now() + STOP_GRACE;
    while pids.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids.iter().filter(|p| alive(p)) {
        crate::io::child::signal(*pid, libc::SIGKILL);
    }
}

/// Removes what an earlier demo left when it was killed before it could clean up.
fn clean_stale() {
    for dir in demo_dirs() {
        if dir.join("kept").exists() {
            continue;
        }
        let demo_pid: Option<u32> = std::fs::read_to_string(dir.join("demo.pid"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        if demo_pid.is_some_and(|pid| runs_with(pid, "demo")) {
            continue; // another demo of this user, still running
        }
        stop_pids(&recorded_daemons(&dir));
        if std::fs::remove_dir_all(&dir).is_ok() {
            println!(
                "Removed what an earlier, interrupted demo left: {}",
                dir.display()
            );
        }
    }
}

/// `swarmnet demo --down`.
fn down() -> anyhow::Result<()> {
    let kept: Vec<PathBuf> = demo_dirs()
        .into_iter()
        .filter(|d| d.join("kept").exists())
        .collect();
    if kept.is_empty() {
        println!(
            "No swarm left running by `swarmnet demo --keep` for {}.",
            user_name()
        );
        return Ok(());
    }
    for dir in kept {
        let pids = recorded_daemons(&dir);
        stop_pids(&pids);
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
        println!(
            "Stopped {} daemon{} and removed {}.",
            pids.len(),
            if pids.len() == 1 { "" } else { "s" },
            dir.display()
        );
    }
    Ok(())
}
