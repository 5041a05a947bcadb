//! `swarmnet network ...`: create, ls, inspect, rm, prune, with Docker's flags, columns and texts.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use clap::Subcommand;

use super::daemon::{block_on, client};
use super::output::{json, table};
use super::template::Format;
use crate::api::client::{path_segment, query_value, Client};
use crate::api::network::{Ipam, IpamConfig, Network, NetworkCreateRequest, NetworkCreateResponse};

/// Docker's question before the routing-mesh network is removed.
pub const INGRESS_WARNING: &str = "WARNING! Before removing the routing-mesh network, make sure all the nodes in your swarm run the same docker engine version. Otherwise, removal may not be effective and functionality of newly create ingress networks will be impaired.\nAre you sure you want to continue? [y/N] ";

/// Docker's question before a prune.
pub const PRUNE_WARNING: &str = "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ";

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create {
        /// Driver: overlay (swarm scope) or bridge (only docker_gwbridge). Default: overlay,
        /// and bridge for docker_gwbridge (Docker's command to customise it gives no -d).
        #[arg(short, long)]
        driver: Option<String>,
        /// Subnet in CIDR format (default: the next free one of the swarm's address pools).
        #[arg(long)]
        subnet: Vec<String>,
        /// Gateway of the subnet (default: its first address).
        #[arg(long)]
        gateway: Option<String>,
        /// Allocate task addresses from a sub-range.
        #[arg(long = "ip-range")]
        ip_range: Option<String>,
        /// Driver options: encrypted, com.docker.network.driver.mtu=N, ...overlay.vxlanid_list=N.
        #[arg(short = 'o', long = "opt", value_parser = key_value)]
        opt: Vec<(String, String)>,
        /// Create the swarm routing-mesh network.
        #[arg(long)]
        ingress: bool,
        /// Enable manual container attachment.
        #[arg(long)]
        attachable: bool,
        /// Restrict external access to the network.
        #[arg(long)]
        internal: bool,
        /// Set metadata on a network.
        #[arg(long, value_parser = key_value)]
        label: Vec<(String, String)>,
        name: String,
    },
    /// List networks.
    Ls {
        /// Only display network IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate the output.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Filter output based on conditions provided (name=, id=, driver=, scope=, label=, type=).
        #[arg(short, long, value_parser = key_value)]
        filter: Vec<(String, String)>,
    },
    /// Display detailed information on one or more networks.
    Inspect {
        /// Format the output using a Go template ({{.Name}}, {{json .IPAM}}, ...).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks.
    Rm {
        /// Do not ask before removing the ingress network.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all unused networks.
    Prune {
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

/// `KEY=VALUE` (a bare `KEY` is `KEY=""`, as Docker takes `--opt encrypted`).
fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!("invalid argument {s:?}: expected KEY=VALUE"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The body the docker CLI sends for the same flags.
#[allow(clippy::too_many_arguments)]
pub fn create_body(
    name: String,
    driver: String,
    subnets: Vec<String>,
    gateway: Option<String>,
    ip_range: Option<String>,
    opt: Vec<(String, String)>,
    ingress: bool,
    attachable: bool,
    internal: bool,
    label: Vec<(String, String)>,
) -> Result<NetworkCreateRequest, String> {
    if subnets.is_empty() && (gateway.is_some() || ip_range.is_some()) {
        return Err("every ip-range or gateway must have a corresponding subnet".into());
    }
    let mut config: Vec<IpamConfig> = subnets
        .into_iter()
        .map(|s| IpamConfig {
            subnet: Some(s),
            ..Default::default()
        })
        .collect();
    if let Some(first) = config.first_mut() {
        first.gateway = gateway;
        first.ip_range = ip_range;
    }
    Ok(NetworkCreateRequest {
        name,
        check_duplicate: true,
        driver,
        internal,
        attachable,
        ingress,
        ipam: Some(Ipam {
            driver: "default".into(),
            options: Some(BTreeMap::new()),
            config,
        }),
        options: Some(opt.into_iter().collect()),
        labels: Some(label.into_iter().collect()),
        ..Default::default()
    })
}

/// Rows of `network ls`: Docker's columns, sorted by name, IDs cut to 12 unless `no_trunc`.
pub fn ls_rows(networks: &[Network], no_trunc: bool) -> Vec<Vec<String>> {
    let mut sorted: Vec<&Network> = networks.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .into_iter()
        .map(|n| {
            let id = if no_trunc {
                n.id.clone()
            } else {
                n.id.chars().take(12).collect()
            };
            vec![id, n.name.clone(), n.driver.clone(), n.scope.clone()]
        })
        .collect()
}

/// Docker's `filters` parameter for `-f k=v` flags: `{"k":{"v":true}}`, URL-encoded.
pub fn filters_query(filters: &[(String, String)]) -> String {
    let mut map: BTreeMap<&str, BTreeMap<&str, bool>> = BTreeMap::new();
    for (k, v) in filters {
        map.entry(k).or_default().insert(v, true);
    }
    if map.is_empty() {
        return String::new();
    }
    let text = serde_json::to_string(&map).unwrap_or_default();
    format!("?filters={}", query_value(&text))
}

fn route(key: &str) -> String {
    format!("/networks/{}", path_segment(key))
}

/// Asks `question` and reads one answer line; true only for y/yes (EOF is no, as Docker).
fn confirm(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub fn run(host: Option<&str>, cmd: NetworkCommand) -> anyhow::Result<()> {
    let client = client(host)?;
    block_on(run_async(&client, cmd))?
}

async fn run_async(client: &Client, cmd: NetworkCommand) -> anyhow::Result<()> {
    match cmd {
        NetworkCommand::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            opt,
            ingress,
            attachable,
            internal,
            label,
            name,
        } => {
            let driver = driver.unwrap_or_else(|| {
                if name == crate::control::network::GWBRIDGE {
                    "bridge".into()
                } else {
                    "overlay".into()
                }
            });
            let body = create_body(
                name, driver, subnet, gateway, ip_range, opt, ingress, attachable, internal, label,
            )
            .map_err(anyhow::Error::msg)?;
            let answer = client.post("/networks/create", Some(&body)).await?;
            let created: NetworkCreateResponse = serde_json::from_slice(&answer)?;
            println!("{}", created.id);
        }
        NetworkCommand::Ls {
            quiet,
            no_trunc,
            filter,
        } => {
            let list: Vec<Network> = client
                .get(&format!("/networks{}", filters_query(&filter)))
                .await?;
            let rows = ls_rows(&list, no_trunc);
            if quiet {
                for r in rows {
                    println!("{}", r[0]);
                }
            } else {
                print!(
                    "{}",
                    table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)
                );
            }
        }
        NetworkCommand::Inspect { format, networks } => {
            let format = format.as_deref().map(Format::parse).transpose()?;
            let mut found = Vec::new();
            let mut failed = Vec::new();
            for key in networks {
                match client.get::<Network>(&route(&key)).await {
                    Ok(n) => found.push(n),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            match format {
                Some(f) => {
                    for n in &found {
                        println!("{}", f.render(n)?);
                    }
                }
                None => println!("{}", json(&found)?),
            }
            if !failed.is_empty() {
                anyhow::bail!(failed.join("\n"));
            }
        }
        NetworkCommand::Rm { force, networks } => {
            let mut failed = Vec::new();
            for key in networks {
                if !force {
                    if let Ok(n) = client.get::<Network>(&route(&key)).await {
                        if n.ingress && !confirm(INGRESS_WARNING) {
                            continue;
                        }
                    }
                }
                match client.delete(&route(&key)).await {
                    Ok(()) => println!("{key}"),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if !failed.is_empty() {
                anyhow::bail!(failed.join("\n"));
            }
        }
        NetworkCommand::Prune { force } => {
            if !force && !confirm(PRUNE_WARNING) {
                return Ok(());
            }
            let answer = client.post::<()>("/networks/prune", None).await?;
            let pruned: serde_json::Value = serde_json::from_slice(&answer)?;
            let names: Vec<&str> = pruned["NetworksDeleted"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            if !names.is_empty() {
                println!("Deleted Networks:");
                for n in names {
                    println!("{n}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_create_flags_make_the_clis_body() {
        let body = create_body(
            "my-network".into(),
            "overlay".into(),
            vec!["10.0.9.0/24".into()],
            Some("10.0.9.99".into()),
            None,
            vec![("encrypted".into(), String::new())],
            false,
            true,
            false,
            vec![],
        )
        .unwrap();
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["Name"], "my-network");
        assert_eq!(v["Driver"], "overlay");
        assert_eq!(v["Attachable"], true);
        assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.0.9.0/24");
        assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "10.0.9.99");
        assert_eq!(v["Options"]["encrypted"], "");
        assert_eq!(v["CheckDuplicate"], true);
    }

    #[test]
    fn gateway_without_subnet_is_refused_before_asking() {
        let e = create_body(
            "x".into(),
            "overlay".into(),
            vec![],
            Some("10.0.0.1".into()),
            None,
            vec![],
            false,
            false,
            false,
            vec![],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "every ip-range or gateway must have a corresponding subnet"
        );
    }

    #[test]
    fn filters_are_dockers_json_map_of_sets() {
        let q = filters_query(&[
            ("driver".into(), "overlay".into()),
            ("name".into(), "my".into()),
        ]);
        let text: String = form_urlencoded::parse(q.trim_start_matches("?filters=").as_bytes())
            .map(|(k, v)| format!("{k}{v}"))
            .collect();
        assert_eq!(text, r#"{"driver":{"overlay":true},"name":{"my":true}}"#);
        assert_eq!(filters_query(&[]), "");
    }

    #[test]
    fn opt_without_value_is_empty() {
        assert_eq!(
            key_value("encrypted").unwrap(),
            ("encrypted".into(), "".into())
        );
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(key_value("=x").is_err());
    }
}
