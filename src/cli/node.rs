//! `swarmnet node ...`: ls, inspect, update, rm, promote, demote.

use clap::Subcommand;

use super::daemon::call;
use super::output::{json, table, title};
use crate::api::{Availability, Node, Reply, Request, Role};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes of the swarm.
    Ls {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Display detailed information on one or more nodes ("self" for this node).
    Inspect {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Update a node.
    Update {
        /// active, pause or drain.
        #[arg(long)]
        availability: Availability,
        node: String,
    },
    /// Remove one or more nodes from the swarm.
    Rm {
        /// Remove even if the node is not down.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Promote one or more nodes to manager.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Demote one or more nodes from manager.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

fn self_id(host: Option<&str>) -> anyhow::Result<Option<String>> {
    match call(host, Request::Info)? {
        Reply::Info(info) => Ok(info.node_id),
        _ => anyhow::bail!("unexpected reply from the daemon"),
    }
}

/// Rows of `node ls`, Docker's columns, `*` beside this node's ID.
pub fn node_rows(nodes: &[Node], self_id: Option<&str>) -> Vec<Vec<String>> {
    nodes
        .iter()
        .map(|n| {
            let id = if Some(n.id.as_str()) == self_id {
                format!("{} *", n.id)
            } else {
                n.id.clone()
            };
            let manager = match &n.manager_status {
                Some(m) if m.leader => "Leader".to_string(),
                Some(m) => title(&format!("{:?}", m.reachability).to_lowercase()),
                None => String::new(),
            };
            vec![
                id,
                n.hostname.clone(),
                title(&format!("{:?}", n.status.state).to_lowercase()),
                title(&n.availability.to_string()),
                manager,
            ]
        })
        .collect()
}

pub fn run(host: Option<&str>, cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Ls { quiet } => {
            let Reply::Nodes(nodes) = call(host, Request::NodeList)? else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            if quiet {
                for n in &nodes {
                    println!("{}", n.id);
                }
                return Ok(());
            }
            let me = self_id(host)?;
            print!(
                "{}",
                table(
                    &["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"],
                    &node_rows(&nodes, me.as_deref()),
                )
            );
        }
        NodeCommand::Inspect { nodes } => {
            let mut found = Vec::new();
            for query in nodes {
                let id = if query == "self" {
                    self_id(host)?
                        .ok_or_else(|| anyhow::anyhow!("This node is not part of a swarm"))?
                } else {
                    query
                };
                match call(host, Request::NodeInspect { id })? {
                    Reply::Node(n) => found.push(n),
                    _ => anyhow::bail!("unexpected reply from the daemon"),
                }
            }
            println!("{}", json(&found)?);
        }
        NodeCommand::Update { availability, node } => {
            call(
                host,
                Request::NodeUpdate {
                    id: node.clone(),
                    availability,
                },
            )?;
            println!("{node}");
        }
        NodeCommand::Rm { force, nodes } => {
            for id in nodes {
                call(
                    host,
                    Request::NodeRemove {
                        id: id.clone(),
                        force,
                    },
                )?;
                println!("{id}");
            }
        }
        NodeCommand::Promote { nodes } => set_roles(host, nodes, Role::Manager)?,
        NodeCommand::Demote { nodes } => set_roles(host, nodes, Role::Worker)?,
    }
    Ok(())
}

fn set_roles(host: Option<&str>, nodes: Vec<String>, role: Role) -> anyhow::Result<()> {
    for id in nodes {
        match call(
            host,
            Request::NodeSetRole {
                id: id.clone(),
                role,
            },
        )? {
            Reply::Text(already) => println!("{already}"),
            _ => match role {
                Role::Manager => println!("Node {id} promoted to a manager in the swarm."),
                Role::Worker => println!("Manager {id} demoted in the swarm."),
            },
        }
    }
    Ok(())
}
