//! `swarmnet run` (a node in the foreground on a static topology) and `swarmnet exec` (a command
//! inside a task's network namespace).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::dataplane::{Counters, InterfaceStats};
use crate::io::lock::{FileLock, LockError};
use crate::io::{netns, node, Node, NodeConfig};
use crate::topology::Topology;

/// Runs a node in the foreground on a static topology until SIGINT or SIGTERM. SIGHUP re-reads
/// the topology (new encryption keys, remote endpoints) without stopping traffic.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The node's topology file (TOML).
    #[arg(long, value_name = "FILE")]
    pub topology: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = workers)]
    pub workers: Option<u16>,
    /// Run the node inside this named network namespace (its host), e.g. to run several nodes
    /// on one machine. Unlike `ip netns exec`, this keeps the mount namespace, so the tasks'
    /// namespaces stay visible to `ip netns` and `swarmnet exec`.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Turn off the TAP offloads (TCP segmentation and checksums done by the data path), e.g.
    /// to compare.
    #[arg(long)]
    pub no_offload: bool,
    /// Where to keep the node's counters (JSON, rewritten every second)
    /// [default: /run/swarmnet/NODE/counters.json].
    #[arg(long, value_name = "FILE")]
    pub counters: Option<PathBuf>,
    /// Encrypted networks: where to keep the outbound ESP sequence numbers, so that peers
    /// accept this node again after a restart [default:
    /// /var/lib/swarmnet/nodes/NODE/esp-sequence.json].
    #[arg(long, value_name = "FILE")]
    pub esp_sequence_file: Option<PathBuf>,
}

fn workers(text: &str) -> Result<u16, String> {
    super::number_in(text, 1, 256).map(|n| n as u16)
}

/// Runs a command inside a task's network namespace.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The task whose namespace to enter: a service's task on this node (`my-web.1`, its full
    /// name or ID, or the service's name when one of its tasks runs here; asked of the daemon),
    /// or an endpoint of `swarmnet run`.
    pub endpoint: String,
    /// The topology that names the endpoint's namespace (`netns`); without it the namespace is
    /// the endpoint's name.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn write_counters(
    path: &Path,
    counters: &Counters,
    names: &[String],
    interfaces: Vec<(String, InterfaceStats)>,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let mut report = counters.report(names);
    report.task_interfaces = interfaces.into_iter().collect();
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let topology = Topology::load(&args.topology)?;
    if let Some(host) = &args.netns {
        // Before any thread exists, so every thread of the node lives in the host namespace.
        let file = std::fs::File::open(netns::path(host))
            .with_context(|| format!("network namespace {host} not found"))?;
        netns::enter(&file).with_context(|| format!("cannot enter network namespace {host}"))?;
    }
    let workers = match args.workers {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let counters_path = args
        .counters
        .unwrap_or_else(|| node::default_counters_path(&topology.node.name));
    // One run per node (per counters directory): held until this process exits, so a second
    // `run` started at the same moment refuses before it creates anything.
    let lock_path = counters_path.with_file_name("run.lock");
    let _run_lock = FileLock::claim(&lock_path, &format!("node {}", topology.node.name)).map_err(
        |e| match e {
            LockError::Io { ref cause, .. }
                if cause.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                anyhow::anyhow!(
                    "cannot start: {e}; choose a writable place for the node's counters and \
                     lock with --counters FILE (as a user other than root the default is under \
                     $XDG_RUNTIME_DIR when it is set)"
                )
            }
            e => anyhow::Error::from(e).context("cannot start"),
        },
    )?;
    // Registered before anything is created, so a signal during set-up still ends in clean-up.
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    let name = topology.node.name.clone();
    let (addr, port) = (topology.node.data_path_addr, topology.node.data_path_port);
    let esp_sequence_file = args
        .esp_sequence_file
        .unwrap_or_else(|| node::default_esp_sequence_file(&topology.node.name));
    let mut node = Node::start(NodeConfig {
        topology,
        workers,
        offload: !args.no_offload,
        esp_sequence_file,
        resolv_conf: None,
    })
    .with_context(|| format!("node {name} could not start"))?;
    println!("node {name} running: {workers} worker(s), data path {addr}:{port}");
    for t in node.tasks() {
        println!("  task {} in netns {}", t.endpoint, t.netns.name());
    }
    for (name, app) in node.virtual_tasks() {
        println!("  virtual task {name}: {}", app_name(app));
    }
    println!("counters: {}", counters_path.display());
    println!("ready");
    std::io::stdout().flush().ok();

    let mut last_write = Instant::now() - Duration::from_secs(1);
    let mut failed = false;
    'run: loop {
        for sig in signals.pending() {
            if sig != SIGHUP {
                tracing::info!(signal = sig, "shutting down");
                break 'run;
            }
            let result = Topology::load(&args.topology)
                .map_err(anyhow::Error::from)
                .and_then(|t| node.apply(&t).map_err(anyhow::Error::from));
            match result {
                Ok(applied) => println!("reloaded {}: {applied}", args.topology.display()),
                Err(e) => {
                    eprintln!("reload refused, still running on the previous topology: {e:#}");
                    println!("reload failed");
                }
            }
            std::io::stdout().flush().ok();
        }
        for line in node.take_app_events() {
            println!("task {line}");
        }
        std::io::stdout().flush().ok();
        if !node.healthy() {
            failed = true;
            break;
        }
        node.renew_reservations();
        if last_write.elapsed() >= Duration::from_secs(1) {
            last_write = Instant::now();
            if let Err(e) = write_counters(
                &counters_path,
                &node.counters(),
                &node.port_names(),
                node.interface_stats(),
            ) {
                tracing::warn!(error = %e, "cannot write counters");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let interfaces = node.interface_stats();
    let names = node.port_names();
    let tap_drops: u64 = interfaces.iter().map(|(_, s)| s.tx_dropped).sum();
    let counters = node.stop();
    write_counters(&counters_path, &counters, &names, interfaces)?;
    let drops = counters.drops_by_name();
    println!(
        "node {name} stopped: underlay rx {} tx {}; dropped by task interfaces before the node read them: {tap_drops}; drops: {}",
        counters.underlay.rx_packets,
        counters.underlay.tx_packets,
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    );
    if failed {
        bail!("a worker failed; see the log above");
    }
    Ok(())
}

fn app_name(app: &crate::topology::App) -> String {
    match app {
        crate::topology::App::Whoami => "whoami (HTTP on 80)".into(),
        crate::topology::App::Echo => "echo (TCP and UDP on 7)".into(),
        crate::topology::App::Fetch(t) => format!("fetch {t}"),
        crate::topology::App::Lookup(names) => format!("lookup {}", names.join(" ")),
        crate::topology::App::IngressSandbox => "ingress sandbox (routing mesh)".into(),
    }
}

/// The namespace of a service task on this node, asked of the daemon; `None` when no daemon
/// answers (then the name is a `swarmnet run` endpoint's).
fn daemon_sandbox(host: Option<&str>, task: &str) -> anyhow::Result<Option<String>> {
    use crate::api::client::{path_segment, ClientError};
    let client = super::daemon::client(host)?;
    let route = format!("/swarmnet/tasks/{}/sandbox", path_segment(task));
    match super::daemon::block_on(client.get::<serde_json::Value>(&route))? {
        Ok(v) => Ok(v["Netns"].as_str().map(str::to_string)),
        // Not a task of the daemon's, but a namespace of that name: a `swarmnet run` endpoint.
        Err(ClientError::Api { status, .. })
            if status == hyper::StatusCode::NOT_FOUND && netns::exists(task) =>
        {
            Ok(None)
        }
        Err(ClientError::Api { message, .. }) => bail!("{message}"),
        Err(_) => Ok(None),
    }
}

pub fn exec(host: Option<&str>, args: ExecArgs) -> anyhow::Result<()> {
    let ns = match &args.topology {
        Some(path) => {
            let topo = Topology::load(path)?;
            let ep = topo
                .local_endpoints()
                .find(|e| e.name == args.endpoint)
                .with_context(|| {
                    format!("no local endpoint {} in {}", args.endpoint, path.display())
                })?;
            if let Some(app) = &ep.app {
                bail!(
                    "endpoint {} is a virtual task ({}) served inside the node: it has no \
                     network namespace to run a command in",
                    ep.name,
                    app_name(app)
                );
            }
            ep.netns.clone().unwrap_or_else(|| ep.name.clone())
        }
        None => match daemon_sandbox(host, &args.endpoint)? {
            Some(ns) => ns,
            None => args.endpoint.clone(),
        },
    };
    let file = std::fs::File::open(netns::path(&ns)).with_context(|| {
        format!(
            "no running task {} (network namespace {ns} not found; is `swarmnet run` up?)",
            args.endpoint
        )
    })?;
    netns::enter(&file)
        .with_context(|| format!("cannot enter network namespace {ns} (needs CAP_SYS_ADMIN)"))?;
    // The task's resolv.conf (its node's resolver), as the task itself sees it.
    // (A mount namespace needs a single-threaded process: it is, here, before exec.)
    if let Some(bind) = netns::ResolvConfBind::for_netns(&ns) {
        if let Err(e) = bind.apply() {
            eprintln!(
                "warning: the command runs with the host's resolv.conf, not task {}'s: {e}",
                args.endpoint
            );
        }
    }
    let err = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    bail!("cannot run {}: {err}", args.command[0])
}
