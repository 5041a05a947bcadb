//! `swarmnet node ...`: ls, inspect, update, rm, promote, demote.

use clap::Subcommand;

use super::daemon::{block_on, client};
use super::output::{json, table, title};
use super::template::Format;
use crate::api::client::{path_segment, Client};
use crate::api::{docker, Availability, Role};

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
        /// Format the output using a Go template ({{.ID}}, {{json .Spec}}, ...).
        #[arg(short, long)]
        format: Option<String>,
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

async fn self_id(client: &Client) -> anyhow::Result<Option<String>> {
    Ok(client.local_info().await?.node_id)
}

/// Rows of `node ls`, Docker's columns, `*` beside this node's ID.
pub fn node_rows(nodes: &[docker::Node], self_id: Option<&str>) -> Vec<Vec<String>> {
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
                n.description.hostname.clone(),
                title(&format!("{:?}", n.status.state).to_lowercase()),
                title(&n.spec.availability.to_string()),
                manager,
            ]
        })
        .collect()
}

pub fn run(host: Option<&str>, cmd: NodeCommand) -> anyhow::Result<()> {
    let client = client(host)?;
    block_on(run_async(&client, cmd))?
}

fn node_route(id: &str) -> String {
    format!("/nodes/{}", path_segment(id))
}

async fn inspect(client: &Client, id: &str) -> anyhow::Result<docker::Node> {
    Ok(client.get(&node_route(id)).await?)
}

/// Sends `spec` as the node's new spec, at the version it was read at.
async fn update(
    client: &Client,
    node: &docker::Node,
    spec: &docker::NodeSpec,
) -> anyhow::Result<()> {
    client
        .post(
            &format!(
                "{}/update?version={}",
                node_route(&node.id),
                node.version.index
            ),
            Some(spec),
        )
        .await?;
    Ok(())
}

async fn run_async(client: &Client, cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Ls { quiet } => {
            let nodes: Vec<docker::Node> = client.get("/nodes").await?;
            if quiet {
                for n in &nodes {
                    println!("{}", n.id);
                }
                return Ok(());
            }
            let me = self_id(client).await?;
            print!(
                "{}",
                table(
                    &["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"],
                    &node_rows(&nodes, me.as_deref()),
                )
            );
        }
        NodeCommand::Inspect { format, nodes } => {
            let format = format.as_deref().map(Format::parse).transpose()?;
            let mut found = Vec::new();
            for query in nodes {
                let id = if query == "self" {
                    self_id(client)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("This node is not part of a swarm"))?
                } else {
                    query
                };
                found.push(inspect(client, &id).await?);
            }
            match format {
                Some(f) => {
                    for n in &found {
                        println!("{}", f.render(n)?);
                    }
                }
                None => println!("{}", json(&found)?),
            }
        }
        NodeCommand::Update { availability, node } => {
            let current = inspect(client, &node).await?;
            let mut spec = current.spec.clone();
            spec.availability = availability;
            update(client, &current, &spec).await?;
            println!("{node}");
        }
        NodeCommand::Rm { force, nodes } => {
            for id in nodes {
                let route = if force {
                    format!("{}?force=1", node_route(&id))
                } else {
                    node_route(&id)
                };
                client.delete(&route).await?;
                println!("{id}");
            }
        }
        NodeCommand::Promote { nodes } => set_roles(client, nodes, Role::Manager).await?,
        NodeCommand::Demote { nodes } => set_roles(client, nodes, Role::Worker).await?,
    }
    Ok(())
}

/// `promote`/`demote`: as the docker CLI does, a node already in the role is only reported.
async fn set_roles(client: &Client, nodes: Vec<String>, role: Role) -> anyhow::Result<()> {
    for id in nodes {
        let current = inspect(client, &id).await?;
        if current.spec.role == role {
            match role {
                Role::Manager => println!("Node {id} is already a manager."),
                Role::Worker => println!("Node {id} is already a worker."),
            }
            continue;
        }
        let mut spec = current.spec.clone();
        spec.role = role;
        update(client, &current, &spec).await?;
        match role {
            Role::Manager => println!("Node {id} promoted to a manager in the swarm."),
            Role::Worker => println!("Manager {id} demoted in the swarm."),
        }
    }
    Ok(())
}
