//! `swarmnet daemon`, and where the daemon and the CLI find each other by default.

use std::os::unix::fs::MetadataExt;
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
}

fn euid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

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
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(node_daemon::run(config))?;
    Ok(())
}

/// Runs one API call on a small runtime (the CLI is otherwise synchronous).
pub fn call(host: Option<&str>, request: crate::api::Request) -> anyhow::Result<crate::api::Reply> {
    let client = client(host)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(client.call(request))?)
}
