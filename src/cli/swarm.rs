//! `swarmnet swarm ...`: init, join, join-token, leave, inspect, ca.
//!
//! Three nodes on one host, each with its own loopback address, state dir and socket:
//! ```text
//! swarmnet -H unix:///tmp/n1.sock daemon --state-dir /tmp/n1 &
//! swarmnet -H unix:///tmp/n2.sock daemon --state-dir /tmp/n2 &
//! swarmnet -H unix:///tmp/n3.sock daemon --state-dir /tmp/n3 &
//! for n in 1 2 3; do swarmnet -H unix:///tmp/n$n.sock wait; done
//! swarmnet -H unix:///tmp/n1.sock swarm init --advertise-addr 127.0.0.1
//! swarmnet -H unix:///tmp/n2.sock swarm join --advertise-addr 127.0.0.2 \
//!     --token "$(swarmnet -H unix:///tmp/n1.sock swarm join-token -q manager)" 127.0.0.1:2377
//! swarmnet -H unix:///tmp/n3.sock swarm join --advertise-addr 127.0.0.3 \
//!     --token "$(swarmnet -H unix:///tmp/n1.sock swarm join-token -q worker)" 127.0.0.1:2377
//! swarmnet -H unix:///tmp/n1.sock node ls
//! ```

use clap::{Args, Subcommand};

use super::daemon::{block_on, client};
use super::output::json;
use crate::api::client::Client;
use crate::api::{docker, Availability, Role};

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
    #[arg(long, value_name = "IP|IFACE[:PORT]", value_parser = parse_addr_port)]
    pub advertise_addr: Option<String>,
    /// Listen address (default: the advertise IP, port 2377).
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_addr_port)]
    pub listen_addr: Option<String>,
    /// Address or interface for data-path (VXLAN) traffic (default: the advertise address).
    #[arg(long, visible_alias = "datapath-addr", value_name = "IP|IFACE")]
    pub data_path_addr: Option<String>,
    /// Port for data-path (VXLAN) traffic, 1024-49151 (default 4789).
    #[arg(long, value_name = "N", value_parser = data_path_port)]
    pub data_path_port: Option<u32>,
    /// Address pool for global-scope networks, CIDR (repeatable; default 10.0.0.0/8).
    #[arg(long, value_name = "CIDR")]
    pub default_addr_pool: Vec<String>,
    /// Subnet length carved from the pools, 1-29 (default 24).
    #[arg(long, value_name = "N", value_parser = mask_length)]
    pub default_addr_pool_mask_length: Option<u32>,
    /// Rotation interval of the network encryption keys, 1s to 8760h (e.g. 12h, 30m, 45s;
    /// default 12h).
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
    #[arg(long, value_name = "IP|IFACE[:PORT]", value_parser = parse_addr_port)]
    pub advertise_addr: Option<String>,
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_addr_port)]
    pub listen_addr: Option<String>,
    /// Address or interface for data-path (VXLAN) traffic (default: the advertise address).
    #[arg(long, visible_alias = "datapath-addr", value_name = "IP|IFACE")]
    pub data_path_addr: Option<String>,
    /// Availability of the node (active, pause, drain).
    #[arg(long, default_value = "active")]
    pub availability: Availability,
    /// A manager's address, HOST:PORT.
    #[arg(value_parser = parse_addr_port)]
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

fn data_path_port(text: &str) -> Result<u32, String> {
    super::number_in(text, 1024, 49151).map(|n| n as u32)
}

fn mask_length(text: &str) -> Result<u32, String> {
    super::number_in(text, 1, 29).map(|n| n as u32)
}

/// Longest key rotation interval: a year (8760h).
const MAX_ROTATION_SECS: u64 = 365 * 24 * 3600;

/// Parses `90`, `45s`, `30m`, `12h` into seconds, 1 s to a year, without overflow.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let mult: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("invalid duration unit in {text:?}: use s, m or h")),
    };
    let range = || {
        format!(
            "the duration must be from 1s to {}h",
            MAX_ROTATION_SECS / 3600
        )
    };
    if num.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: expected e.g. 45s, 30m or 12h"
        ));
    }
    // All digits: a parse failure can only be a number beyond u64.
    let n: u64 = num.parse().map_err(|_| range())?;
    match n.checked_mul(mult) {
        Some(secs) if (1..=MAX_ROTATION_SECS).contains(&secs) => Ok(secs),
        _ => Err(range()),
    }
}

/// Checks the port of `IP:PORT`, `HOST:PORT` or `[IPv6]:PORT`, if any, is 1-65535; the address
/// itself is resolved by the daemon (it may name one of the daemon host's interfaces).
fn parse_addr_port(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("an address must not be empty".into());
    }
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Ok(text.to_string());
    }
    if let Some((_, port)) = text.rsplit_once(':') {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "the port of {text:?} must be a number from 1 to 65535"
            ));
        }
        match port.parse::<u16>() {
            Ok(p) if p >= 1 => {}
            _ => return Err(format!("port {port} is not in 1..=65535")),
        }
    }
    Ok(text.to_string())
}

fn join_command(role: Role, token: &str, addr: &str) -> String {
    format!(
        "To add a {role} to this swarm, run the following command:\n\n    swarmnet swarm join --token {token} {addr}\n"
    )
}

pub fn run(host: Option<&str>, cmd: SwarmCommand) -> anyhow::Result<()> {
    let client = client(host)?;
    block_on(run_async(&client, cmd))?
}

/// The address other nodes join through: this manager's own cluster address.
async fn own_manager_addr(client: &Client) -> anyhow::Result<String> {
    let info = client.local_info().await?;
    let id = info
        .node_id
        .ok_or_else(|| anyhow::anyhow!("This node is not part of a swarm"))?;
    let node: docker::Node = client.get(&format!("/nodes/{id}")).await?;
    Ok(node
        .manager_status
        .map(|m| m.addr)
        .unwrap_or_else(|| format!("{}:2377", node.status.addr)))
}

async fn run_async(client: &Client, cmd: SwarmCommand) -> anyhow::Result<()> {
    match cmd {
        SwarmCommand::Init(a) => {
            let body = docker::SwarmInitRequest {
                advertise_addr: a.advertise_addr.unwrap_or_default(),
                listen_addr: a.listen_addr.unwrap_or_default(),
                data_path_addr: a.data_path_addr.unwrap_or_default(),
                data_path_port: a.data_path_port.unwrap_or(0),
                default_addr_pool: a.default_addr_pool,
                subnet_size: a.default_addr_pool_mask_length.unwrap_or(0),
                force_new_cluster: a.force_new_cluster,
                ..Default::default()
            };
            let route = match a.key_rotation_interval {
                Some(secs) => format!("/swarm/init?keyRotationInterval={secs}"),
                None => "/swarm/init".to_string(),
            };
            let answer = client.post(&route, Some(&body)).await?;
            let node_id: String = serde_json::from_slice(&answer)?;
            let swarm: docker::Swarm = client.get("/swarm").await?;
            let advertise = own_manager_addr(client).await?;
            println!("Swarm initialized: current node ({node_id}) is now a manager.\n");
            println!(
                "{}",
                join_command(Role::Worker, &swarm.join_tokens.worker, &advertise)
            );
            println!("To add a manager to this swarm, run 'swarmnet swarm join-token manager' and follow the instructions.\n");
        }
        SwarmCommand::Join(a) => {
            let body = docker::SwarmJoinRequest {
                join_token: a.token,
                remote_addrs: vec![a.remote],
                advertise_addr: a.advertise_addr.unwrap_or_default(),
                listen_addr: a.listen_addr.unwrap_or_default(),
                data_path_addr: a.data_path_addr.unwrap_or_default(),
                availability: a.availability.to_string(),
            };
            client.post("/swarm/join", Some(&body)).await?;
            let role = client.local_info().await?.role.unwrap_or(Role::Worker);
            println!("This node joined a swarm as a {role}.");
        }
        SwarmCommand::JoinToken(a) => {
            if a.rotate {
                let swarm: docker::Swarm = client.get("/swarm").await?;
                let param = match a.role {
                    Role::Worker => "rotateWorkerToken",
                    Role::Manager => "rotateManagerToken",
                };
                client
                    .post(
                        &format!(
                            "/swarm/update?version={}&{param}=true",
                            swarm.cluster.version.index
                        ),
                        Some(&swarm.cluster.spec),
                    )
                    .await?;
            }
            let swarm: docker::Swarm = client.get("/swarm").await?;
            let token = match a.role {
                Role::Worker => swarm.join_tokens.worker,
                Role::Manager => swarm.join_tokens.manager,
            };
            if a.quiet {
                println!("{token}");
            } else {
                if a.rotate {
                    println!("Successfully rotated {} join token.\n", a.role);
                }
                let advertise = own_manager_addr(client).await?;
                println!("{}", join_command(a.role, &token, &advertise));
            }
        }
        SwarmCommand::Leave { force } => {
            let route = if force {
                "/swarm/leave?force=1"
            } else {
                "/swarm/leave"
            };
            client.post::<()>(route, None).await?;
            println!("Node left the swarm.");
        }
        SwarmCommand::Inspect => {
            let swarm: docker::Swarm = client.get("/swarm").await?;
            println!("{}", json(&[swarm])?);
        }
        SwarmCommand::Ca => {
            let (_, body) = client
                .send(hyper::Method::GET, "/swarmnet/swarm/ca", None)
                .await?;
            let pem: String = serde_json::from_slice(&body)?;
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

    #[test]
    fn durations_never_wrap() {
        // Found by fuzzing: 18446744073709551615h overflowed, 5124095576030432h wrapped to 3584 s.
        for text in [
            "18446744073709551615h",
            "5124095576030432h",
            "18446744073709551616",
            "99999999999999999999999s",
            "8761h",
            "525601m",
            "31536001s",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("from 1s to 8760h"), "{text}: {err}");
        }
        assert_eq!(parse_duration("8760h"), Ok(MAX_ROTATION_SECS));
        assert_eq!(parse_duration("1s"), Ok(1));
    }

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        use clap::Parser;
        crate::cli::Cli::try_parse_from(std::iter::once("swarmnet").chain(args.iter().copied()))
    }

    /// clap's "invalid value" error naming `flag`, with `range` in its text.
    fn refused(args: &[&str], flag: &str, range: &str) {
        let err = parse(args).expect_err("refused").to_string();
        assert!(err.contains("invalid value"), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(err.contains(range), "{args:?}: {err}");
    }

    #[test]
    fn numbers_out_of_range_name_flag_and_range() {
        let init = |extra: &[&str]| -> Vec<String> {
            ["swarm", "init"]
                .iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect()
        };
        let run = |v: Vec<String>, flag: &str, range: &str| {
            let v: Vec<&str> = v.iter().map(String::as_str).collect();
            refused(&v, flag, range);
        };
        run(
            init(&["--key-rotation-interval", "18446744073709551615h"]),
            "--key-rotation-interval",
            "from 1s to 8760h",
        );
        run(
            init(&["--key-rotation-interval", "0s"]),
            "--key-rotation-interval",
            "from 1s to 8760h",
        );
        for p in ["0", "1023", "49152", "65536", "4294967296"] {
            run(
                init(&["--data-path-port", p]),
                "--data-path-port",
                "1024..=49151",
            );
        }
        for m in ["0", "30", "4294967296"] {
            run(
                init(&["--default-addr-pool-mask-length", m]),
                "--default-addr-pool-mask-length",
                "1..=29",
            );
        }
        for a in ["127.0.0.1:0", "127.0.0.1:65536", "eth0:99999999999"] {
            run(
                init(&["--advertise-addr", a]),
                "--advertise-addr",
                "1..=65535",
            );
            run(init(&["--listen-addr", a]), "--listen-addr", "1..=65535");
        }
        refused(
            &["swarm", "init", "--data-path-port=-1"],
            "--data-path-port",
            "1024..=49151",
        );
        refused(
            &["swarm", "join", "--token", "t", "127.0.0.1:70000"],
            "REMOTE",
            "1..=65535",
        );
        // Within range, all accepted.
        for ok in [
            init(&[
                "--data-path-port",
                "1024",
                "--default-addr-pool-mask-length",
                "29",
            ]),
            init(&[
                "--data-path-port",
                "49151",
                "--key-rotation-interval",
                "8760h",
            ]),
            init(&[
                "--advertise-addr",
                "eth0:2377",
                "--listen-addr",
                "[::1]:2377",
            ]),
            init(&["--advertise-addr", "::1", "--listen-addr", "0.0.0.0"]),
        ] {
            let v: Vec<&str> = ok.iter().map(String::as_str).collect();
            parse(&v).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        }
    }
}
