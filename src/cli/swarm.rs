//! `swarmnet swarm ...`: init, join, join-token, leave, inspect, ca.
//!
//! Three nodes on one host, each with its own loopback address, state dir and socket:
//! ```text
//! swarmnet -H unix:///tmp/n1.sock daemon --state-dir /tmp/n1 &
//! swarmnet -H unix:///tmp/n2.sock daemon --state-dir /tmp/n2 &
//! swarmnet -H unix:///tmp/n3.sock daemon --state-dir /tmp/n3 &
//! swarmnet -H unix:///tmp/n1.sock swarm init --advertise-addr 127.0.0.1
//! swarmnet -H unix:///tmp/n2.sock swarm join --advertise-addr 127.0.0.2 \
//!     --token "$(swarmnet -H unix:///tmp/n1.sock swarm join-token -q manager)" 127.0.0.1:2377
//! swarmnet -H unix:///tmp/n3.sock swarm join --advertise-addr 127.0.0.3 \
//!     --token "$(swarmnet -H unix:///tmp/n1.sock swarm join-token -q worker)" 127.0.0.1:2377
//! swarmnet -H unix:///tmp/n1.sock node ls
//! ```

use clap::{Args, Subcommand};

use super::daemon::call;
use super::output::json;
use crate::api::{Availability, InitRequest, JoinRequest, Reply, Request, Role};

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Initialize a swarm with this node as its first manager.
    Init(InitArgs),
    /// Join a swarm as a worker or a manager (the token decides).
    Join(JoinArgs),
    /// Manage join tokens.
    JoinToken(JoinTokenArgs),
    /// Leave the swarm.
    Leave {
        /// Leave even if this is a manager whose departure would lose quorum.
        #[arg(short, long)]
        force: bool,
    },
    /// Display the swarm's details.
    Inspect,
    /// Print the root CA certificate (PEM).
    Ca,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Advertised address (IP or interface, with optional port).
    #[arg(long, value_name = "IP|IFACE[:PORT]")]
    pub advertise_addr: Option<String>,
    /// Listen address (default: the advertise IP, port 2377).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub listen_addr: Option<String>,
    /// Address or interface for data-path (VXLAN) traffic.
    #[arg(long, value_name = "IP|IFACE")]
    pub data_path_addr: Option<String>,
    /// Port for data-path (VXLAN) traffic, 1024-49151 (default 4789).
    #[arg(long, value_name = "N")]
    pub data_path_port: Option<u32>,
    /// Address pool for global-scope networks, CIDR (repeatable; default 10.0.0.0/8).
    #[arg(long, value_name = "CIDR")]
    pub default_addr_pool: Vec<String>,
    /// Subnet length carved from the pools (default 24).
    #[arg(long, value_name = "N")]
    pub default_addr_pool_mask_length: Option<u32>,
    /// Rotation interval of the network encryption keys (e.g. 12h, 30m, 45s; default 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub key_rotation_interval: Option<u64>,
    /// Force create a new cluster from current state: on a manager of a swarm that lost
    /// quorum, continue as its only manager, keeping its nodes, CA, keys and tokens.
    #[arg(long)]
    pub force_new_cluster: bool,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Join token (SWMTKN-1-...).
    #[arg(long)]
    pub token: String,
    #[arg(long, value_name = "IP|IFACE[:PORT]")]
    pub advertise_addr: Option<String>,
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub listen_addr: Option<String>,
    #[arg(long, value_name = "IP|IFACE")]
    pub data_path_addr: Option<String>,
    /// Availability of the node (active, pause, drain).
    #[arg(long, default_value = "active")]
    pub availability: Availability,
    /// A manager's address, HOST:PORT.
    pub remote: String,
}

#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// Only display the token.
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate the join token.
    #[arg(long)]
    pub rotate: bool,
    /// worker or manager.
    pub role: Role,
}

/// Parses `90`, `45s`, `30m`, `12h` into seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 45s, 30m or 12h"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("invalid duration unit in {text:?}: use s, m or h")),
    };
    match n * mult {
        0 => Err("the duration must be positive".into()),
        secs => Ok(secs),
    }
}

fn join_command(role: Role, token: &str, addr: &str) -> String {
    format!(
        "To add a {role} to this swarm, run the following command:\n\n    swarmnet swarm join --token {token} {addr}\n"
    )
}

pub fn run(host: Option<&str>, cmd: SwarmCommand) -> anyhow::Result<()> {
    match cmd {
        SwarmCommand::Init(a) => {
            let reply = call(
                host,
                Request::SwarmInit(InitRequest {
                    advertise_addr: a.advertise_addr,
                    listen_addr: a.listen_addr,
                    data_path_addr: a.data_path_addr,
                    data_path_port: a.data_path_port,
                    default_addr_pool: a.default_addr_pool,
                    default_addr_pool_mask_length: a.default_addr_pool_mask_length,
                    key_rotation_interval_secs: a.key_rotation_interval,
                    force_new_cluster: a.force_new_cluster,
                }),
            )?;
            let Reply::Init {
                node_id,
                worker_token,
                advertise,
            } = reply
            else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            println!("Swarm initialized: current node ({node_id}) is now a manager.\n");
            println!("{}", join_command(Role::Worker, &worker_token, &advertise));
            println!("To add a manager to this swarm, run 'swarmnet swarm join-token manager' and follow the instructions.\n");
        }
        SwarmCommand::Join(a) => {
            let reply = call(
                host,
                Request::SwarmJoin(JoinRequest {
                    token: a.token,
                    remote_addr: a.remote,
                    advertise_addr: a.advertise_addr,
                    listen_addr: a.listen_addr,
                    data_path_addr: a.data_path_addr,
                    availability: a.availability,
                }),
            )?;
            let Reply::Joined { role } = reply else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            println!("This node joined a swarm as a {role}.");
        }
        SwarmCommand::JoinToken(a) => {
            let reply = call(
                host,
                Request::JoinToken {
                    role: a.role,
                    rotate: a.rotate,
                },
            )?;
            let Reply::Token { token, advertise } = reply else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            if a.quiet {
                println!("{token}");
            } else {
                if a.rotate {
                    println!("Successfully rotated {} join token.\n", a.role);
                }
                println!("{}", join_command(a.role, &token, &advertise));
            }
        }
        SwarmCommand::Leave { force } => {
            call(host, Request::SwarmLeave { force })?;
            println!("Node left the swarm.");
        }
        SwarmCommand::Inspect => {
            let Reply::Swarm(swarm) = call(host, Request::SwarmInspect)? else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            println!("{}", json(&[swarm])?);
        }
        SwarmCommand::Ca => {
            let Reply::Text(pem) = call(host, Request::SwarmCa)? else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            print!("{pem}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30m"), Ok(1_800));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert_eq!(parse_duration("7"), Ok(7));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("h").is_err());
    }
}
