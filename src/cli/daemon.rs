//! `swarmnet daemon`, and where the daemon and the CLI find each other by default.

use std::path::PathBuf;

use anyhow::Context;

use crate::api::client::Client;
use crate::control::daemon::{self as node_daemon, DaemonConfig};

/// `swarmnet daemon` arguments.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Directory for the node's persisted state (default /var/lib/swarmnet as root, else
    /// $XDG_STATE_HOME/swarmnet).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The node's name in the swarm (`node ls`, `service ps`); default the OS hostname.
    #[arg(long, value_name = "NAME", value_parser = parse_hostname)]
    pub hostname: Option<String>,
    /// The resolv.conf whose nameservers (at most 3) answer the tasks' queries for names
    /// outside the swarm; default /etc/resolv.conf.
    #[arg(long, value_name = "FILE")]
    pub resolv_conf: Option<PathBuf>,
    /// The address the routing mesh's published ports bind on (default: all addresses), so
    /// that several daemons can share a host (127.0.0.1, 127.0.0.2, ...).
    #[arg(long, value_name = "ADDR")]
    pub publish_addr: Option<std::net::Ipv4Addr>,
    /// Serve Prometheus metrics (text format) on http://ADDR:PORT/metrics; off by default.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// A group whose members may use the API socket too (mode 0660, as dockerd's -G); a name
    /// from /etc/group or a number. Default: the daemon's user only (mode 0600).
    #[arg(short = 'G', long, value_name = "GROUP", value_parser = parse_group)]
    pub group: Option<u32>,
    /// The port the node gossips on (UDP and TCP, on its data-path address): membership,
    /// failure detection and the overlay's endpoint tables, sealed under the swarm's keys.
    /// Docker's 7946 by default; another one for several nodes on one address.
    #[arg(long, value_name = "PORT", default_value_t = crate::io::gossip::GOSSIP_PORT, value_parser = parse_gossip_port)]
    pub gossip_port: u16,
}

/// `--gossip-port`: 1-65535 (a node's peers must know the port in advance: not 0).
fn parse_gossip_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) => Err("the gossip port must be 1-65535: the other nodes join through it, so it cannot be picked at random".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("{s:?} is not a port number (1-65535)")),
    }
}

/// `--group`: a group name from /etc/group, or a numeric group ID.
fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group to find group {s:?}: {e}"))?;
    groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == s).then(|| f.nth(1)?.parse().ok())?
        })
        .ok_or_else(|| format!("no group {s:?} in /etc/group"))
}

/// `--metrics-addr`: an IP address and a port, e.g. `127.0.0.1:9323` or `[::1]:9323`.
fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not an IP address and port (ADDR:PORT, e.g. 127.0.0.1:9323 or [::1]:9323)"
        )
    })
}

/// A node name: 1-253 characters, none of them blank or a control character.
fn parse_hostname(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!(
            "hostname must be 1-253 characters long, not {}",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("hostname must not contain {c:?}"));
    }
    Ok(s.to_string())
}

use crate::api::owner::euid;

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Default state directory.
pub fn default_state_dir() -> PathBuf {
    if euid() == 0 {
        return PathBuf::from("/var/lib/swarmnet");
    }
    match std::env::var_os("XDG_STATE_HOME") {
        Some(dir) => PathBuf::from(dir).join("swarmnet"),
        None => home().join(".local/state/swarmnet"),
    }
}

/// Default API socket.
pub fn default_socket() -> PathBuf {
    if euid() == 0 {
        return PathBuf::from("/run/swarmnet.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("swarmnet.sock"),
        None => PathBuf::from(format!("/tmp/swarmnet-{}/swarmnet.sock", euid())),
    }
}

/// The socket named by `-H`, else `SWARMNET_HOST`, else the default.
pub fn client(host: Option<&str>) -> anyhow::Result<Client> {
    let host = host.map(str::to_string).or_else(|| {
        std::env::var("SWARMNET_HOST")
            .ok()
            .filter(|h| !h.is_empty())
    });
    match host {
        Some(h) => Client::from_host(&h).map_err(anyhow::Error::msg),
        None => Ok(Client::new(default_socket())),
    }
}

/// Runs the daemon in the foreground until SIGINT/SIGTERM.
pub fn run(host: Option<&str>, args: DaemonArgs) -> anyhow::Result<()> {
    let socket = client(host)?.path().to_path_buf();
    let config = DaemonConfig {
        state_dir: args.state_dir.unwrap_or_else(default_state_dir),
        socket,
        hostname: args.hostname,
        resolv_conf: args.resolv_conf,
        publish_addr: args.publish_addr,
        metrics_addr: args.metrics_addr,
        socket_group: args.group,
        gossip_port: args.gossip_port,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(node_daemon::run(config))?;
    Ok(())
}

/// Runs the CLI's calls to the daemon on a small runtime (the CLI is otherwise synchronous).
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}

/// `swarmnet wait` arguments.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// How long to wait, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
}

/// Waits until the daemon's socket answers `_ping`, or fails after the timeout.
pub fn wait(host: Option<&str>, args: WaitArgs) -> anyhow::Result<()> {
    let client = client(host)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.timeout);
    block_on(async {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let err = match tokio::time::timeout(left, client.ping()).await {
                Ok(Ok(())) => return Ok(()),
                // A socket that is not ours will not become ours by waiting.
                Ok(Err(e @ crate::api::client::ClientError::Owner(_))) => return Err(e.into()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer yet".to_string(),
            };
            if std::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "the swarmnet daemon at unix://{} did not answer within {}s: {err}",
                    client.path().display(),
                    args.timeout
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })?
}
