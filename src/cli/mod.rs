//! Command-line interface: one file per command group.

mod replay;
mod run;

use clap::{Parser, Subcommand};

/// Docker-swarm-style service networking in one userspace binary.
#[derive(Debug, Parser)]
#[command(name = "swarmnet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
        Command::Replay(args) => replay::run(args),
        Command::Run(args) => run::run(args),
        Command::Exec(args) => run::exec(args),
    }
}
