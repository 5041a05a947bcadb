//! Command-line interface: one file per command group.

pub mod daemon;
pub mod node;
pub mod output;
mod replay;
mod run;
pub mod swarm;

use clap::{Parser, Subcommand};

/// Docker-swarm-style service networking in one userspace binary.
#[derive(Debug, Parser)]
#[command(name = "swarmnet", version, about)]
pub struct Cli {
    /// Daemon socket to connect to (unix:///path); default $SWARMNET_HOST, else the daemon's default.
    #[arg(short = 'H', long = "host", global = true, value_name = "unix://PATH")]
    pub host: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one swarm node in the foreground.
    Daemon(daemon::DaemonArgs),
    /// Manage the swarm.
    #[command(subcommand)]
    Swarm(swarm::SwarmCommand),
    /// Manage swarm nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Wait until the daemon answers on its socket (for scripts that start it in the background).
    Wait(daemon::WaitArgs),
    /// Replay pcap captures through one node's data path, deterministically.
    Replay(replay::ReplayArgs),
    /// Run a node in the foreground on a static topology (needs CAP_NET_ADMIN).
    Run(run::RunArgs),
    /// Run a command inside a task's network namespace.
    Exec(run::ExecArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Daemon(args) => daemon::run(cli.host.as_deref(), args),
        Command::Swarm(cmd) => swarm::run(cli.host.as_deref(), cmd),
        Command::Node(cmd) => node::run(cli.host.as_deref(), cmd),
        Command::Wait(args) => daemon::wait(cli.host.as_deref(), args),
        Command::Replay(args) => replay::run(args),
        Command::Run(args) => run::run(args),
        Command::Exec(args) => run::exec(args),
    }
}
