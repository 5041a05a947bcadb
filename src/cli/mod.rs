//! Command-line interface: one file per command group.

pub mod capture;
pub mod daemon;
mod demo;
pub mod events;
pub mod network;
pub mod node;
pub mod output;
mod replay;
mod run;
pub mod service;
pub mod service_args;
pub mod stats;
pub mod swarm;
pub mod template;

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
    /// Start a whole swarm on loopback addresses and show what it does (no root needed).
    Demo(demo::DemoArgs),
    /// Run one swarm node in the foreground.
    Daemon(daemon::DaemonArgs),
    /// Capture what the node's data path carries for a network, task or service, as pcap.
    Capture(capture::CaptureArgs),
    /// Manage the swarm.
    #[command(subcommand)]
    Swarm(swarm::SwarmCommand),
    /// Manage swarm nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Manage swarm networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage swarm services.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Stream the swarm's events (networks, services, nodes, tasks) as a manager sees them.
    Events(events::EventsArgs),
    /// Show this node's traffic by task, network and service VIP, refreshed every second.
    Stats(stats::StatsArgs),
    /// Wait until the daemon answers on its socket (for scripts that start it in the background).
    Wait(daemon::WaitArgs),
    /// Replay pcap captures through one node's data path, deterministically.
    Replay(replay::ReplayArgs),
    /// Run a node in the foreground on a static topology (needs CAP_NET_ADMIN).
    Run(run::RunArgs),
    /// Run a command inside a task's network namespace.
    Exec(run::ExecArgs),
}

/// A whole number from `min` to `max`: clap's value parser for numeric flags, so that a value
/// out of range, however many digits it has, is refused naming the range.
pub(crate) fn number_in(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let range = || format!("{text} is not in {min}..={max}");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(if text.strip_prefix('-').is_some_and(|t| !t.is_empty()) {
            range()
        } else {
            format!("expected a whole number in {min}..={max}")
        });
    }
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(range()),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Daemon(args) => daemon::run(cli.host.as_deref(), args),
        Command::Capture(args) => capture::run(cli.host.as_deref(), args),
        Command::Swarm(cmd) => swarm::run(cli.host.as_deref(), cmd),
        Command::Node(cmd) => node::run(cli.host.as_deref(), cmd),
        Command::Network(cmd) => network::run(cli.host.as_deref(), cmd),
        Command::Service(cmd) => service::run(cli.host.as_deref(), cmd),
        Command::Events(args) => events::run(cli.host.as_deref(), args),
        Command::Stats(args) => stats::run(cli.host.as_deref(), args),
        Command::Wait(args) => daemon::wait(cli.host.as_deref(), args),
        Command::Replay(args) => replay::run(args),
        Command::Run(args) => run::run(args),
        Command::Exec(args) => run::exec(cli.host.as_deref(), args),
    }
}

#[cfg(test)]
mod tests {
    use super::number_in;

    #[test]
    fn numbers_are_bounded_however_long() {
        assert_eq!(number_in("1024", 1024, 49151), Ok(1024));
        assert_eq!(number_in("49151", 1024, 49151), Ok(49151));
        for bad in [
            "1023",
            "49152",
            "-1",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let err = number_in(bad, 1024, 49151).unwrap_err();
            assert_eq!(err, format!("{bad} is not in 1024..=49151"));
        }
        for junk in ["", "-", "12a", "+5", " 5", "0x10"] {
            let err = number_in(junk, 1, 29).unwrap_err();
            assert_eq!(err, "expected a whole number in 1..=29", "{junk:?}");
        }
    }
}
