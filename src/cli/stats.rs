//! `swarmnet stats`: this node's traffic by task, network and VIP, like `docker stats` (from
//! `GET /swarmnet/stats`). On a terminal the table is redrawn in place every second; piped,
//! each refresh is printed after the last, so a log or `grep` reads every one.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::api::stats::{Rates, Stats};

/// Time between two refreshes (`docker stats` refreshes every second too).
const REFRESH: Duration = Duration::from_secs(1);
/// Clears the terminal and puts the cursor home, as `docker stats` does before each table.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// `swarmnet stats` arguments.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print one table (or JSON object) and exit, rather than refresh every second.
    #[arg(long)]
    pub no_stream: bool,
    /// `json`: each refresh as one JSON object on a line (the API's answer, counters only).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Only these: a network (its row), a service (its tasks and VIPs) or a task (full name,
    /// `service.slot` or ID).
    #[arg(value_name = "NETWORK|SERVICE|TASK")]
    pub names: Vec<String>,
}

/// Bytes in Docker's units (`units.HumanSizeWithPrecision(n, 3)`): 648B, 1.23kB, 12.3MB.
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n.max(0.0);
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{v:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[unit])
}

fn per_second(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_string(), |r| format!("{}/s", human_bytes(r)))
}

/// The node's gossip in one line: where, its members, its counters and refusals.
fn gossip_line(s: &Stats) -> String {
    match &s.gossip {
        Some(g) => {
            let refused: Vec<String> = g
                .dropped
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{} on {}: members {}; suspicion {} ms; {} remote endpoints; rx {} msgs {}, tx {} msgs {}; refused {}",
                if g.members.is_empty() { "alone" } else { "up" },
                g.addr,
                if g.members.is_empty() { "none".to_string() } else { g.members.join(",") },
                g.suspicion_ms,
                g.remote_endpoints,
                g.recv_msgs,
                human_bytes(g.recv_bytes as f64),
                g.sent_msgs,
                human_bytes(g.sent_bytes as f64),
                if refused.is_empty() { "none".to_string() } else { refused.join(" ") }
            )
        }
        None => "not running (outside a swarm, or no keys yet)".to_string(),
    }
}

/// The tables of one refresh; `rates` against the previous one, if any.
pub fn render(s: &Stats, rates: Option<&Rates>) -> String {
    use super::output::table;
    if !s.data_path {
        return format!(
            "node {}: no data path runs yet (outside a swarm, or no task on this node yet): nothing to count\ngossip  {}\n",
            s.node_name,
            gossip_line(s)
        );
    }
    let rows: Vec<Vec<String>> = s
        .tasks
        .iter()
        .map(|t| {
            let r = rates.and_then(|r| r.tasks.get(&(t.task.clone(), t.network.clone())));
            vec![
                t.task.clone(),
                if t.service.is_empty() {
                    "-".into()
                } else {
                    t.service.clone()
                },
                t.network.clone(),
                t.traffic.rx_packets.to_string(),
                human_bytes(t.traffic.rx_bytes as f64),
                per_second(r.map(|r| r.0)),
                t.traffic.tx_packets.to_string(),
                human_bytes(t.traffic.tx_bytes as f64),
                per_second(r.map(|r| r.1)),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "TASK", "SERVICE", "NETWORK", "RX PKTS", "RX", "RX/s", "TX PKTS", "TX", "TX/s",
        ],
        &rows,
    );
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .networks
        .iter()
        .map(|n| {
            let r = rates.and_then(|r| r.networks.get(&n.network));
            vec![
                n.network.clone(),
                n.traffic.rx_packets.to_string(),
                human_bytes(n.traffic.rx_bytes as f64),
                per_second(r.map(|r| r.0)),
                n.traffic.tx_packets.to_string(),
                human_bytes(n.traffic.tx_bytes as f64),
                per_second(r.map(|r| r.1)),
                n.vip_connections.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "NETWORK",
            "RX PKTS",
            "RX",
            "RX/s",
            "TX PKTS",
            "TX",
            "TX/s",
            "VIP CONNS",
        ],
        &rows,
    ));
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .services
        .iter()
        .map(|v| {
            let r = rates.and_then(|r| r.services.get(&(v.service.clone(), v.network.clone())));
            vec![
                v.service.clone(),
                v.network.clone(),
                v.vip.clone(),
                v.connections.to_string(),
                r.map_or_else(|| "-".to_string(), |r| format!("{r:.1}/s")),
                v.active.to_string(),
                human_bytes(v.bytes as f64),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "SERVICE", "NETWORK", "VIP", "CONNS", "CONNS/s", "ACTIVE", "BYTES",
        ],
        &rows,
    ));
    out.push('\n');
    let n = &s.node;
    let drops = if n.drops.is_empty() {
        "none".to_string()
    } else {
        n.drops
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let esp = match n.esp_sas {
        Some(sa) => format!(
            "{} SAs out, {} in, {} replays refused",
            sa.outbound, sa.inbound, n.esp_replays_refused
        ),
        None => format!("no keys, {} replays refused", n.esp_replays_refused),
    };
    let u = &n.underlay;
    let gossip = gossip_line(s);
    out.push_str(&table(
        &[&format!("NODE {}", s.node_name), ""],
        &[
            vec![
                "underlay".into(),
                format!(
                    "rx {} pkts {}, tx {} pkts {}",
                    u.rx_packets,
                    human_bytes(u.rx_bytes as f64),
                    u.tx_packets,
                    human_bytes(u.tx_bytes as f64)
                ),
            ],
            vec![
                "dns queries".into(),
                format!("{} local, {} forwarded", n.dns_local, n.dns_forwarded),
            ],
            vec!["drops".into(), drops],
            vec!["esp".into(), esp],
            vec!["gossip".into(), gossip],
        ],
    ));
    out
}

/// Shows the stats until stopped (or once with `--no-stream`).
pub fn run(host: Option<&str>, args: StatsArgs) -> anyhow::Result<()> {
    let json = match args.format.as_deref() {
        None | Some("table") => false,
        Some("json" | "{{json .}}") => true,
        Some(other) => anyhow::bail!("unsupported --format {other:?}: use json"),
    };
    let client = super::daemon::client(host)?;
    let redraw = !args.no_stream && !json && std::io::stdout().is_terminal();
    super::daemon::block_on(show(client, args, json, redraw))?
}

async fn show(
    client: crate::api::client::Client,
    args: StatsArgs,
    json: bool,
    redraw: bool,
) -> anyhow::Result<()> {
    let mut prev: Option<(Stats, Instant)> = None;
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = std::io::stdout();
    loop {
        tick.tick().await;
        // The first answer checks the names (an unknown one is an error naming it); later
        // ones keep what they name, so a task leaving the node empties its rows rather than
        // ending the stream.
        let stats = match prev {
            None => client.stats(&args.names).await?,
            Some(_) => {
                let mut all = client.stats(&[]).await?;
                all.keep(&args.names);
                all
            }
        };
        let at = Instant::now();
        let text = if json {
            format!("{}\n", serde_json::to_string(&stats)?)
        } else {
            let rates = prev
                .as_ref()
                .map(|(p, then)| Rates::between(p, &stats, at.duration_since(*then).as_secs_f64()));
            let mut text = render(&stats, rates.as_ref());
            if redraw {
                text.insert_str(0, CLEAR);
            } else if !args.no_stream {
                text.push('\n');
            }
            text
        };
        // A closed pipe (`| head`) ends the command quietly.
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(());
        }
        if args.no_stream {
            return Ok(());
        }
        prev = Some((stats, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::stats::{NetworkStats, NodeStats, TaskStats, Traffic, VipStats};

    #[test]
    fn bytes_read_like_docker() {
        assert_eq!(human_bytes(0.0), "0B");
        assert_eq!(human_bytes(648.0), "648B");
        assert_eq!(human_bytes(1234.0), "1.23kB");
        assert_eq!(human_bytes(1200.0), "1.2kB");
        assert_eq!(human_bytes(12_345_678.0), "12.3MB");
        assert_eq!(human_bytes(123_456_789.0), "123MB");
    }

    #[test]
    fn a_table_names_every_row_and_the_node_numbers() {
        let s = Stats {
            node_name: "node-1".into(),
            data_path: true,
            gossip: None,
            tasks: vec![TaskStats {
                task: "web.1.abc".into(),
                service: "web".into(),
                network: "my-net".into(),
                traffic: Traffic {
                    rx_packets: 3,
                    rx_bytes: 1234,
                    tx_packets: 2,
                    tx_bytes: 100,
                },
            }],
            networks: vec![NetworkStats {
                network: "my-net".into(),
                vip_connections: 7,
                ..NetworkStats::default()
            }],
            services: vec![VipStats {
                service: "web".into(),
                network: "my-net".into(),
                vip: "10.0.1.2".into(),
                connections: 7,
                ..VipStats::default()
            }],
            node: NodeStats {
                drops: [("no_route".to_string(), 3)].into_iter().collect(),
                dns_local: 5,
                ..NodeStats::default()
            },
        };
        let mut rates = Rates::default();
        rates
            .tasks
            .insert(("web.1.abc".into(), "my-net".into()), (2000.0, 0.0));
        let text = render(&s, Some(&rates));
        let line = text.lines().find(|l| l.starts_with("web.1.abc")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "web.1.abc",
                "web",
                "my-net",
                "3",
                "1.23kB",
                "2kB/s",
                "2",
                "100B",
                "0B/s"
            ]
        );
        assert!(text.contains("drops         no_route=3"), "{text}");
        assert!(text.contains("5 local, 0 forwarded"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("web ")
            && l.contains("10.0.1.2")
            && l.split_whitespace().nth(3) == Some("7")));
        // No earlier refresh: no rates.
        let first = render(&s, None);
        assert!(first
            .lines()
            .any(|l| l.starts_with("web.1.abc") && l.contains(" - ")));
        assert!(render(&Stats::default(), None).contains("no data path"));
    }
}
