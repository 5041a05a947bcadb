//! Command-line interface: one file per command group.

mod replay;

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
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Replay(args) => replay::run(args),
    }
}
